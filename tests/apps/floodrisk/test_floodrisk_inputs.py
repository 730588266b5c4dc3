"""Grids and study inputs: GeoTIFF/GeoJSON round trips, reprojection, repairs and the
errors that name the file and field."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from shapely.geometry import LineString, box, mapping

from cityos.apps.floodrisk.grid import (
    GridError,
    GridSpec,
    cells_in_polygon,
    cells_on_line,
    rasterize_polygons,
    read_raster,
    write_geotiff,
)
from cityos.apps.floodrisk.inputs import InputError, InputWarning, load_scenario
from cityos.apps.floodrisk.losses import CurveNumber, GreenAmpt

X0, Y0, DX = 700_000.0, 9_320_000.0, 10.0
UTM = "EPSG:32748"
GRID = GridSpec.from_origin(X0, Y0, DX, (20, 30), UTM)


def plane(grid: GridSpec = GRID) -> np.ndarray:
    rows, cols = np.indices(grid.shape)
    return 5.0 - 0.1 * rows + 0.02 * cols


def geojson(path, features, crs=UTM):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(g), "properties": p} for g, p in features]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path.name


def cell_box(row: int, col: int, grid: GridSpec = GRID):
    x, y = grid.xy(row, col)
    h = grid.cell_size / 2
    return box(x - h, y - h, x + h, y + h)


@pytest.fixture
def study_dir(tmp_path):
    write_geotiff(tmp_path / "dem.tif", plane(), GRID, description="elevation (m)")
    lc = np.ones(GRID.shape, dtype=np.uint8)
    lc[:, 15:] = 2
    write_geotiff(tmp_path / "lc.tif", lc, GRID)
    return tmp_path


def base_inputs(**extra):
    cfg = {"dem": "dem.tif",
           "landcover": {"raster": "lc.tif", "manning": {1: 0.05, 2: 0.015},
                         "curve_number": {1: 70, 2: 98}}}
    cfg.update(extra)
    return cfg


# -- grid ----------------------------------------------------------------------------

def test_gridspec_geometry():
    assert GRID.cell_size == 10 and GRID.cell_area == 100
    assert GRID.bounds == (X0, Y0 - 200, X0 + 300, Y0)
    x, y = GRID.xy(2, 3)
    assert (x, y) == (X0 + 35, Y0 - 25)
    assert tuple(map(int, GRID.rowcol(x, y))) == (2, 3)


def test_geotiff_round_trip_nodata_and_description(tmp_path):
    a = plane()
    a[4, 5] = np.nan
    path = write_geotiff(tmp_path / "a.tif", a, GRID, description="max depth (m)")
    with rasterio.open(path) as src:
        assert src.compression.name.lower() == "deflate"
        assert src.nodata == -9999 and src.descriptions == ("max depth (m)",)
    back, grid = read_raster(path)
    assert grid.same_as(GRID)
    assert np.isnan(back[4, 5]) and np.allclose(back[~np.isnan(a)], a[~np.isnan(a)])


def test_read_raster_resamples_onto_a_target_grid(tmp_path):
    path = write_geotiff(tmp_path / "a.tif", plane(), GRID)
    coarse = GridSpec.from_origin(X0, Y0, 20.0, (10, 15), UTM)
    out, grid = read_raster(path, like=coarse, resampling="average")
    assert grid is coarse
    # the average of 2x2 cells of a plane is the plane at the block centre
    expected = 5.0 - 0.1 * (2 * np.arange(10)[:, None] + 0.5) + 0.02 * (
        2 * np.arange(15)[None, :] + 0.5)
    assert np.allclose(out, expected)


def test_geographic_raster_is_refused_or_reprojected(tmp_path):
    lonlat = GridSpec(Affine(0.0001, 0, 106.80, 0, -0.0001, -6.10), "EPSG:4326", (20, 20))
    path = write_geotiff(tmp_path / "geo.tif", np.full(lonlat.shape, 3.0), lonlat)
    with pytest.raises(GridError, match="EPSG:32748"):
        read_raster(path, require_projected=True)
    out, grid = read_raster(path, crs=UTM, cell_size=10.0, require_projected=True)
    assert grid.crs.to_epsg() == 32748 and grid.cell_size == pytest.approx(10.0)
    x, y = Transformer.from_crs(4326, 32748, always_xy=True).transform(106.801, -6.101)
    r, c = grid.rowcol(x, y)
    assert out[r, c] == pytest.approx(3.0)


def test_rasterize_polygons_and_lines():
    square = box(X0 + 20, Y0 - 50, X0 + 60, Y0 - 10)  # centres of rows 1-4, cols 2-5
    mask = cells_in_polygon(square, GRID)
    assert mask.sum() == 16 and mask[1:5, 2:6].all()
    out = rasterize_polygons([(square, 2.5), (box(X0, Y0 - 10, X0 + 10, Y0), 7.0)], GRID, -1.0)
    assert out[2, 3] == 2.5 and out[0, 0] == 7.0 and out[10, 10] == -1.0
    line = LineString([(X0 + 3.3, Y0 - 7.1), (X0 + 251.7, Y0 - 163.9)])
    on = cells_on_line(line, GRID)
    expected = np.array([[cell_box(r, c).intersects(line) for c in range(30)]
                         for r in range(20)])
    assert np.array_equal(on, expected)


# -- the scenario ------------------------------------------------------------------------

def test_load_scenario_with_every_layer(study_dir):
    d = study_dir
    geojson(d / "b.geojson", [
        (box(X0 + 10, Y0 - 30, X0 + 30, Y0 - 20), {"id": "h1", "use_class": "residential",
                                                   "value_per_m2": 100.0}),
        (box(X0 + 200, Y0 - 100, X0 + 210, Y0 - 80), {"id": "f1", "use_class": "industrial",
                                                      "value": 5e4, "floor_height_m": 0.5,
                                                      "people": 3}),
    ])
    geojson(d / "roads.geojson", [(LineString([(X0, Y0 - 55), (X0 + 300, Y0 - 55)]), {})])
    geojson(d / "drains.geojson", [(box(X0, Y0 - 100, X0 + 100, Y0), {"capacity_mm_h": 30})])
    (d / "q.csv").write_text("time_min,discharge_m3_s\n0,0\n30,12\n120,0\n")
    cfg = base_inputs(
        buildings={"file": "b.geojson", "people_per_m2": {"residential": 0.02}},
        roads="roads.geojson", drains="drains.geojson",
        soil={"curve_number": "landcover"}, boundary={"north": "open"},
        inflow={"line": [[X0 + 105, Y0 - 195], [X0 + 125, Y0 - 195]], "hydrograph": "q.csv"})
    s = load_scenario(cfg, d)
    assert s.grid.same_as(GRID)
    assert np.allclose(s.elevation, plane())
    assert s.manning[0, 0] == 0.05 and s.manning[0, 20] == 0.015
    assert isinstance(s.losses, CurveNumber) and s.losses.cn[0, 20] == 98
    assert s.drain_capacity_mm_h[0, 0] == 30 and s.drain_capacity_mm_h[15, 0] == 0
    assert s.drain_capacity_mm_h.sum() == 30 * 100
    h1, f1 = s.buildings
    assert h1.value == pytest.approx(200 * 100.0) and h1.people == pytest.approx(4.0)
    assert f1.floor_height_m == 0.5 and f1.people == 3
    assert len(s.roads) == 1 and s.roads[0].length == pytest.approx(300)
    assert s.boundary["north"] == "open" and s.boundary["south"] == "closed"
    (inflow,) = s.inflows
    assert sorted(map(tuple, inflow.cells)) == [(19, 10), (19, 11), (19, 12)]
    assert inflow.times_s.tolist() == [0, 1800, 7200]
    dom, forcing = s.domain(), s.forcing(None)
    assert dom.cell_size == 10 and forcing.inflows[0] is not None


def test_dem_holes_are_filled_or_refused(tmp_path):
    z = plane()
    z[8:10, 12:14] = np.nan          # interior hole: 4 cells
    z[0, :5] = np.nan                # nodata along the edge: outside the model
    write_geotiff(tmp_path / "dem.tif", z, GRID)
    with pytest.warns(InputWarning, match="filled 4 nodata cells in 1 hole"):
        s = load_scenario({"dem": "dem.tif", "manning": 0.03}, tmp_path)
    assert np.allclose(s.elevation[8:10, 12:14], plane()[8:10, 12:14])  # exact on a plane
    assert np.isnan(s.elevation[0, :5]).all() and s.active.sum() == 600 - 5
    with pytest.raises(InputError, match=r"dem.tif: 4 nodata cells inside the DEM .*max_hole_share"):
        load_scenario({"dem": {"file": "dem.tif", "max_hole_share": 0.001}, "manning": 0.03},
                      tmp_path)


def test_dem_grid_errors(tmp_path):
    rect = GridSpec(Affine(10, 0, X0, 0, -12, Y0), UTM, (5, 5))
    write_geotiff(tmp_path / "rect.tif", np.ones((5, 5)), rect)
    with pytest.raises(InputError, match=r"rect.tif: cells are not square \(10 x 12 m\)"):
        load_scenario({"dem": "rect.tif", "manning": 0.03}, tmp_path)
    s = load_scenario({"dem": {"file": "rect.tif", "cell_size_m": 10}, "manning": 0.03},
                      tmp_path)
    assert s.grid.cell_size == 10 and s.grid.shape == (6, 5)
    flipped = GridSpec(Affine(-10, 0, X0, 0, -10, Y0), UTM, (5, 5))
    with rasterio.open(tmp_path / "neg.tif", "w", driver="GTiff", width=5, height=5, count=1,
                       dtype="float32", crs=UTM, transform=flipped.transform) as dst:
        dst.write(np.ones((1, 5, 5), dtype="float32"))
    with pytest.raises(InputError, match="neg.tif: negative or zero cell width"):
        load_scenario({"dem": "neg.tif", "manning": 0.03}, tmp_path)
    bad = plane()
    bad[3, 3] = -32768
    write_geotiff(tmp_path / "nd.tif", bad, GRID)
    with pytest.raises(InputError, match=r"nd.tif: 1 cells have implausible .*nodata"):
        load_scenario({"dem": "nd.tif", "manning": 0.03}, tmp_path)
    lonlat = GridSpec(Affine(0.0001, 0, 106.8, 0, -0.0001, -6.1), "EPSG:4326", (5, 5))
    write_geotiff(tmp_path / "geo.tif", np.ones((5, 5)), lonlat)
    with pytest.raises(InputError, match="geo.tif: CRS EPSG:4326 is geographic.*EPSG:32748"):
        load_scenario({"dem": "geo.tif", "manning": 0.03}, tmp_path)
    with pytest.raises(InputError, match="inputs.dem: file not found"):
        load_scenario({"dem": "missing.tif", "manning": 0.03}, tmp_path)


def test_raster_crs_mismatch_needs_reproject(study_dir):
    other = GridSpec.from_origin(X0 - 500_000, Y0, DX, GRID.shape, "EPSG:32749")
    lc = np.full(GRID.shape, 1, dtype=np.uint8)
    write_geotiff(study_dir / "lc.tif", lc, other)
    with pytest.raises(InputError, match=r"lc.tif: CRS EPSG:32749 differs .*reproject: true"):
        load_scenario(base_inputs(), study_dir)


def test_landcover_class_without_manning_is_named(study_dir):
    cfg = base_inputs()
    cfg["landcover"]["manning"] = {1: 0.05}
    with pytest.raises(InputError, match=r"inputs.landcover.manning: no value for land-cover "
                                         r"class\(es\) \[2\] \(300 cells\)"):
        load_scenario(cfg, study_dir)


def test_manning_and_green_ampt_from_polygons(study_dir):
    d = study_dir
    geojson(d / "n.geojson", [(box(X0, Y0 - 200, X0 + 150, Y0), {"manning": 0.08})])
    geojson(d / "soil.geojson", [(box(X0 + 150, Y0 - 200, X0 + 300, Y0),
                                  {"conductivity_mm_h": 10.0})])
    cfg = base_inputs(
        manning={"polygons": "n.geojson", "default": 0.02},
        soil={"green_ampt": {"conductivity_mm_h": {"polygons": "soil.geojson", "default": 1.0},
                             "suction_mm": 110, "moisture_deficit": 0.3}})
    s = load_scenario(cfg, d)
    assert s.manning[5, 2] == 0.08 and s.manning[5, 20] == 0.02
    assert isinstance(s.losses, GreenAmpt)
    assert s.losses.conductivity_mm_h[5, 2] == 1.0 and s.losses.conductivity_mm_h[5, 20] == 10
    geojson(d / "n.geojson", [(box(X0, Y0 - 200, X0 + 150, Y0), {"manning": -0.01})])
    with pytest.raises(InputError, match=r"n.geojson: feature 0: manning: must be > 0"):
        load_scenario(cfg, d)


def test_building_errors_name_file_feature_and_field(study_dir):
    d = study_dir
    ok = box(X0 + 10, Y0 - 30, X0 + 30, Y0 - 20)
    cases = [
        ({"id": "b7", "use_class": "residential", "value": -5}, r"feature 0 \(id b7\): value: negative \(-5\)"),
        ({"value": 10}, "feature 0: use_class: missing"),
        ({"use_class": "shop"}, "feature 0: value: missing"),
        ({"use_class": "shop", "value": 1, "floor_height_m": "high"}, "feature 0: floor_height_m: not a number"),
    ]
    for props, msg in cases:
        geojson(d / "b.geojson", [(ok, props)])
        with pytest.raises(InputError, match=f"b.geojson: {msg}"):
            load_scenario(base_inputs(buildings="b.geojson"), d)
    geojson(d / "b.geojson", [(LineString([(X0, Y0), (X0 + 5, Y0)]), {"use_class": "x"})])
    with pytest.raises(InputError, match="feature 0: geometry: LineString"):
        load_scenario(base_inputs(buildings="b.geojson"), d)


def test_wgs84_geojson_is_reprojected_and_unknown_crs_refused(study_dir):
    d = study_dir
    to_ll = Transformer.from_crs(32748, 4326, always_xy=True)
    x, y = X0 + 55, Y0 - 55
    lon, lat = to_ll.transform(x, y)
    ll_box = box(lon - 2e-5, lat - 2e-5, lon + 2e-5, lat + 2e-5)
    geojson(d / "b.geojson", [(ll_box, {"use_class": "residential", "value": 1})], crs=None)
    s = load_scenario(base_inputs(buildings="b.geojson"), d)
    c = s.buildings[0].footprint.centroid
    assert c.x == pytest.approx(x, abs=0.01) and c.y == pytest.approx(y, abs=0.01)
    geojson(d / "b.geojson", [(box(X0, Y0 - 10, X0 + 10, Y0), {"use_class": "r", "value": 1})],
            crs=None)
    with pytest.raises(InputError, match="b.geojson: no CRS declared"):
        load_scenario(base_inputs(buildings="b.geojson"), d)
    # buildings beyond the DEM are left out with a warning
    geojson(d / "b.geojson", [(box(X0 + 900, Y0, X0 + 910, Y0 + 10),
                               {"use_class": "r", "value": 1})])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_scenario(base_inputs(buildings="b.geojson"), d)
    assert s.buildings == [] and "1 buildings lie outside" in str(caught[-1].message)


def test_hydrograph_and_boundary_errors(study_dir):
    d = study_dir
    (d / "q.csv").write_text("time_s,discharge_m3_s\n0,1\n600,-2\n")
    inflow = {"point": [X0 + 55, Y0 - 55], "hydrograph": "q.csv"}
    with pytest.raises(InputError, match="q.csv: line 3: discharge_m3_s: negative"):
        load_scenario(base_inputs(inflow=inflow), d)
    (d / "q.csv").write_text("time_s,discharge_m3_s\n0,1\n0,2\n")
    with pytest.raises(InputError, match="q.csv: line 3: time 0 s does not increase"):
        load_scenario(base_inputs(inflow=inflow), d)
    (d / "q.csv").write_text("t,q\n0,1\n")
    with pytest.raises(InputError, match="q.csv: line 1: header needs a time column"):
        load_scenario(base_inputs(inflow=inflow), d)
    (d / "q.csv").write_text("time_s,discharge_m3_s\n0,1\n60,2\n")
    far = {"point": [X0 - 1000, Y0], "hydrograph": "q.csv"}
    with pytest.raises(InputError, match=r"inputs.inflow\[0\]: the inflow location falls on no"):
        load_scenario(base_inputs(inflow=far), d)
    with pytest.raises(InputError, match="inputs.boundary.up: not an edge"):
        load_scenario(base_inputs(boundary={"up": "open"}), d)
    s = load_scenario(base_inputs(boundary={"north": {"level_m": 0.8}}), d)
    assert s.boundary["north"].level_m.tolist() == [0.8]


def test_drains_raster_negative_and_copy_independence(study_dir):
    d = study_dir
    cap = np.full(GRID.shape, 20.0)
    cap[2, 2] = -1
    write_geotiff(d / "drains.tif", cap, GRID)
    with pytest.raises(InputError, match=r"drains.tif: 1 cells break the rule >= 0 \(row 2, col 2"):
        load_scenario(base_inputs(drains="drains.tif"), d)
    cap[2, 2] = 5
    write_geotiff(d / "drains.tif", cap, GRID)
    s = load_scenario(base_inputs(drains="drains.tif", soil={"curve_number": 80}), d)
    assert s.drain_capacity_mm_h[2, 2] == 5
    t = s.copy()
    t.elevation[0, 0] += 1
    t.drain_capacity_mm_h[0, 0] += 1
    t.losses.cn[0, 0] = 50
    assert s.elevation[0, 0] == plane()[0, 0] and s.drain_capacity_mm_h[0, 0] == 20
    assert s.losses.cn[0, 0] == 80
