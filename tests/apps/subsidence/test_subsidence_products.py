"""Readers on small files written in the real layouts: MintPy HDF5 (geocoded and radar
coordinates), EGMS point CSV (Calibrated and Ortho headers), GeoTIFF stacks."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from cityos.apps.subsidence.products import (
    ProductError,
    open_product,
    read_egms_csv,
    read_geotiff_stack,
    read_mintpy,
    read_mintpy_velocity,
)
from cityos.apps.subsidence.synthetic import (
    mintpy_attributes,
    write_geotiff_stack,
    write_mintpy_geometry,
    write_mintpy_timeseries,
    write_mintpy_velocity,
)

DATES = np.array(["2020-01-03", "2020-01-15", "2020-01-27", "2020-02-08"], dtype="datetime64[D]")


def _cube(rows=5, cols=4):
    """Displacement in metres: pixel (r, c) at epoch i is (i + 1) * (10 r + c) mm."""
    r, c = np.mgrid[0:rows, 0:cols]
    cube = np.stack([(i * (10 * r + c)) / 1000.0 for i in range(len(DATES))]).astype(np.float32)
    return cube


def _collect(product, size):
    chunks = list(product.chunks(size))
    return chunks, {k: np.concatenate([getattr(c, k) for c in chunks])
                    for k in ("ids", "lon", "lat", "height", "incidence_deg", "displacement_mm")}


def test_mintpy_geocoded_reads_coordinates_geometry_and_drops_empty_pixels(tmp_path):
    cube = _cube()
    cube[:, 1, 2] = np.nan                  # masked pixel
    cube[:, 3, 3] = 0.0                     # no-data pixel (all zero, not the reference)
    attrs = mintpy_attributes(5, 4, DATES, x_first=106.7, y_first=-6.1, x_step=0.01,
                              y_step=-0.01, ref_yx=(0, 0))
    write_mintpy_timeseries(tmp_path / "timeseries.h5", DATES, cube, attrs)
    r, c = np.mgrid[0:5, 0:4]
    write_mintpy_geometry(tmp_path / "geometryGeo.h5", attrs, height=100.0 + r + c / 10,
                          incidence_deg=30.0 + c)
    write_mintpy_velocity(tmp_path / "velocity.h5", attrs, np.full((5, 4), -0.02),
                          np.full((5, 4), 0.001))
    product = read_mintpy(tmp_path / "timeseries.h5")
    assert product.format == "mintpy" and product.kind == "los"
    assert list(product.dates) == list(DATES)
    assert product.reference_date == DATES[0]
    assert product.orbit == "descending" and product.heading_deg == -168.0
    assert product.wavelength_m == pytest.approx(0.05546576)
    assert product.incidence and product.n_points == 20
    assert product.reference_point == pytest.approx((106.705, -6.105))
    chunks, got = _collect(product, 8)      # two rows per chunk
    assert len(chunks) == 3
    ids = got["ids"]
    assert 1 * 4 + 2 not in ids and 3 * 4 + 3 not in ids and 0 in ids  # reference kept
    assert len(ids) == 18
    rr, cc = np.divmod(ids, 4)
    np.testing.assert_allclose(got["lon"], 106.7 + (cc + 0.5) * 0.01)
    np.testing.assert_allclose(got["lat"], -6.1 - (rr + 0.5) * 0.01)
    np.testing.assert_allclose(got["height"], 100.0 + rr + cc / 10, rtol=1e-6)
    np.testing.assert_allclose(got["incidence_deg"], 30.0 + cc)
    expected = np.arange(4)[None, :] * (10 * rr + cc)[:, None]   # mm
    np.testing.assert_allclose(got["displacement_mm"], expected, atol=1e-4)
    assert chunks[0].velocity_mm_yr == pytest.approx(-20.0)
    vel = read_mintpy_velocity(tmp_path / "velocity.h5")
    assert vel["velocity_mm_yr"][2, 2] == pytest.approx(-20.0)
    assert vel["velocity_std_mm_yr"][2, 2] == pytest.approx(1.0)


def test_mintpy_radar_coordinates_take_lat_lon_from_geometry_and_honour_mask(tmp_path):
    cube = _cube()
    attrs = mintpy_attributes(5, 4, DATES, x_first=0, y_first=0, x_step=1, y_step=-1)
    for key in ("X_FIRST", "Y_FIRST", "X_STEP", "Y_STEP", "X_UNIT", "Y_UNIT", "EPSG"):
        attrs.pop(key)
    write_mintpy_timeseries(tmp_path / "timeseries.h5", DATES, cube, attrs)
    r, c = np.mgrid[0:5, 0:4]
    lat, lon = -6.2 + 0.001 * r + 0.0002 * c, 106.8 + 0.002 * c
    write_mintpy_geometry(tmp_path / "geometryRadar.h5", attrs, height=np.zeros((5, 4)),
                          incidence_deg=np.full((5, 4), 39.0), latitude=lat, longitude=lon)
    mask = np.ones((5, 4), bool)
    mask[4, :] = False
    _, got = _collect(read_mintpy(tmp_path / "timeseries.h5", mask=mask), 100)
    assert len(got["ids"]) == 16
    rr, cc = np.divmod(got["ids"], 4)
    np.testing.assert_allclose(got["lat"], lat[rr, cc], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["lon"], lon[rr, cc], rtol=0, atol=1e-5)


def test_mintpy_errors_name_the_file_and_dataset(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("velocity", data=np.zeros((2, 2)))
    with pytest.raises(ProductError, match=r"other\.h5.*'timeseries'"):
        read_mintpy(tmp_path / "other.h5")
    attrs = mintpy_attributes(5, 4, DATES, x_first=0, y_first=0, x_step=1, y_step=-1)
    for key in ("X_FIRST", "Y_FIRST", "X_STEP", "Y_STEP"):
        attrs.pop(key)
    write_mintpy_timeseries(tmp_path / "radar.h5", DATES, _cube(), attrs)
    with pytest.raises(ProductError, match="radar coordinates"):
        read_mintpy(tmp_path / "radar.h5")
    bad = DATES[[0, 2, 1, 3]]
    attrs = mintpy_attributes(5, 4, DATES, x_first=0, y_first=0, x_step=1, y_step=-1)
    write_mintpy_timeseries(tmp_path / "unsorted.h5", bad, _cube(), attrs)
    with pytest.raises(ProductError, match="unsorted.h5:date.*increasing"):
        read_mintpy(tmp_path / "unsorted.h5")


def _egms_rows():
    pids = ["1aB", "2cD", "3eF"]
    lat, lon = np.array([52.1, 52.2, 52.3]), np.array([5.1, 5.2, 5.3])
    series = np.array([[0.0, -1.5, -3.0], [0.0, 2.0, 4.0], [0.0, 0.5, 1.0]])
    return pids, lat, lon, series


def test_egms_calibrated_csv_streams_points_with_lat_lon(tmp_path):
    pids, lat, lon, series = _egms_rows()
    dates = ["20190103", "20190115", "20190127"]
    head = ("pid,mp_type,latitude,longitude,easting,northing,height,height_wgs84,line,pixel,"
            "rmse,temporal_coherence,amplitude_dispersion,incidence_angle,track_angle,"
            "los_east,los_north,los_up,mean_velocity,mean_velocity_std,acceleration,"
            "acceleration_std,seasonality,seasonality_std," + ",".join(dates))
    lines = [head]
    for i in range(3):
        values = ",".join(f"{v}" for v in series[i])
        lines.append(f"{pids[i]},PS,{lat[i]},{lon[i]},4000000,3200000,{10 + i},{50 + i},1,2,"
                     f"0.8,0.9,0.2,{38 + i},-10.5,-0.6,-0.1,0.78,{-2 + i},0.3,0,0,1,0.1,"
                     + values)
    lines.append("4gH,PS,52.4,5.4,4000000,3200000,1,1,1,1,1,1,1,38,-10.5,0,0,1,0,0,0,0,0,0,"
                 "0,,1")                                   # missing epoch: dropped
    (tmp_path / "egms.csv").write_text("\n".join(lines) + "\n")
    product = read_egms_csv(tmp_path / "egms.csv")
    assert product.format == "egms" and product.kind == "los"
    assert product.heading_deg == pytest.approx(-10.5)
    assert list(product.dates) == list(np.array(["2019-01-03", "2019-01-15", "2019-01-27"],
                                                dtype="datetime64[D]"))
    chunks, got = _collect(product, 2)
    assert [len(c) for c in chunks] == [2, 1]
    assert list(got["ids"]) == pids
    np.testing.assert_allclose(got["lat"], lat)
    np.testing.assert_allclose(got["lon"], lon)
    np.testing.assert_allclose(got["displacement_mm"], series)
    np.testing.assert_allclose(got["incidence_deg"], [38, 39, 40])
    np.testing.assert_allclose(np.concatenate([c.velocity_mm_yr for c in chunks]), [-2, -1, 0])


def test_egms_ortho_csv_converts_epsg3035_and_reports_bad_lines(tmp_path):
    pids, lat, lon, series = _egms_rows()
    east, north = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(
        lon, lat)
    head = ("pid,easting,northing,height,mean_velocity,mean_velocity_std,acceleration,"
            "acceleration_std,seasonality,seasonality_std,20190103,20190115,20190127")
    rows = [f"{pids[i]},{east[i]:.3f},{north[i]:.3f},1,0,0,0,0,0,0,"
            + ",".join(str(v) for v in series[i]) for i in range(3)]
    path = tmp_path / "EGMS_L3_E39N32_100km_U_2019_2023_1.csv"
    path.write_text("\n".join([head] + rows) + "\n")
    product = open_product(path)
    assert product.format == "egms" and product.kind == "vertical"
    _, got = _collect(product, 10)
    np.testing.assert_allclose(got["lon"], lon, atol=1e-7)
    np.testing.assert_allclose(got["lat"], lat, atol=1e-7)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([head] + rows[:2] + [rows[2].replace(",1.0", ",one")]) + "\n")
    with pytest.raises(ProductError, match=r"bad\.csv:4: column '20190127'"):
        list(read_egms_csv(bad).chunks())
    missing = tmp_path / "nodates.csv"
    missing.write_text("pid,easting,northing\nx,1,2\n")
    with pytest.raises(ProductError, match=r"nodates\.csv:1: no date columns"):
        read_egms_csv(missing)


@pytest.mark.parametrize("dates_in", ["description", "tag", "dataset_tag"])
def test_geotiff_stack_dates_units_and_nodata(tmp_path, dates_in):
    cube = _cube() * 1000.0                              # mm
    cube[:, 2, 1] = -9999.0
    path = write_geotiff_stack(tmp_path / "stack.tif", DATES, cube, west=106.7, north=-6.1,
                               x_step=0.01, y_step=0.01, dates_in=dates_in, unit="mm",
                               nodata=-9999.0)
    product = open_product(path)
    assert product.format == "geotiff" and list(product.dates) == list(DATES)
    _, got = _collect(product, 4)
    # the fill value and the all-zero pixel (0, 0) (no reference pixel named) are dropped
    assert len(got["ids"]) == 18 and 2 * 4 + 1 not in got["ids"] and 0 not in got["ids"]
    rr, cc = np.divmod(got["ids"], 4)
    np.testing.assert_allclose(got["lon"], 106.7 + (cc + 0.5) * 0.01)
    np.testing.assert_allclose(got["lat"], -6.1 - (rr + 0.5) * 0.01)
    expected = np.arange(4)[None, :] * (10 * rr + cc)[:, None]
    np.testing.assert_allclose(got["displacement_mm"], expected, atol=1e-4)


def test_geotiff_in_utm_is_converted_to_lon_lat_and_metres_to_mm(tmp_path):
    cube = _cube()                                       # metres
    path = write_geotiff_stack(tmp_path / "utm.tif", DATES, cube, west=700000.0,
                               north=9320000.0, x_step=20.0, y_step=20.0, crs="EPSG:32748")
    _, got = _collect(read_geotiff_stack(path), 100)
    rr, cc = np.divmod(got["ids"], 4)
    lon, lat = Transformer.from_crs("EPSG:32748", "EPSG:4326", always_xy=True).transform(
        700000.0 + (cc + 0.5) * 20, 9320000.0 - (rr + 0.5) * 20)
    np.testing.assert_allclose(got["lon"], lon, atol=1e-9)
    np.testing.assert_allclose(got["lat"], lat, atol=1e-9)
    np.testing.assert_allclose(got["displacement_mm"][:, 3], 3 * (10 * rr + cc), atol=1e-3)


def test_geotiff_without_dates_is_refused(tmp_path):
    path = write_geotiff_stack(tmp_path / "nodate.tif", DATES, _cube(), west=0, north=0,
                               x_step=1, y_step=1, dates_in="none")
    with pytest.raises(ProductError, match=r"nodate\.tif: band 1 has no date"):
        read_geotiff_stack(path)
