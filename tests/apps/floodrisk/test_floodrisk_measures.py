"""Measures change exactly what they say, by the amounts they say, on a copy."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import LineString, Point, box

from cityos.apps.floodrisk.grid import GridSpec
from cityos.apps.floodrisk.inputs import Building, Scenario
from cityos.apps.floodrisk.losses import CurveNumber, GreenAmpt
from cityos.apps.floodrisk.measures import (
    DrainageUpgrade,
    GreenInfrastructure,
    Levee,
    MeasureError,
    Package,
    RaisedFloors,
    RetentionPond,
    measure_from_dict,
    package_from_config,
)

X0, Y0, DX = 700_000.0, 9_320_000.0, 10.0
GRID = GridSpec.from_origin(X0, Y0, DX, (20, 30), "EPSG:32748")


def scenario(losses=None) -> Scenario:
    rng = np.random.default_rng(7)
    z = 2.0 + rng.uniform(0.0, 1.5, GRID.shape)
    z[0, 0] = np.nan  # a wall cell outside the model
    buildings = [
        Building("r1", box(X0 + 10, Y0 - 20, X0 + 20, Y0 - 10), "residential", 1e5),
        Building("r2", box(X0 + 250, Y0 - 190, X0 + 260, Y0 - 180), "residential", 1e5, 0.2),
        Building("c1", box(X0 + 20, Y0 - 40, X0 + 30, Y0 - 30), "commercial", 3e5),
    ]
    return Scenario(GRID, z, np.full(GRID.shape, 0.03), np.full(GRID.shape, 10.0),
                    losses=losses, buildings=buildings)


def cell_box(r, c):
    x, y = GRID.xy(r, c)
    return box(x - 5, y - 5, x + 5, y + 5)


@pytest.mark.parametrize("volume", [1.0, 537.0, 4321.0, 25000.0])
def test_pond_excavates_the_requested_volume_with_a_flat_bottom(volume):
    s = scenario()
    pond = RetentionPond(box(X0 + 50, Y0 - 150, X0 + 150, Y0 - 60), volume_m3=volume)
    t = pond.apply(s)
    inside = np.zeros(GRID.shape, bool)
    inside[6:15, 5:15] = True  # cell centres inside the polygon
    removed = (s.elevation - t.elevation) * GRID.cell_area
    assert removed[inside].sum() == pytest.approx(volume, rel=1e-9)
    assert np.all(removed[~inside & s.active] == 0)
    lowered = removed > 0
    assert np.allclose(t.elevation[lowered], pond.bottom_elevation(s))
    assert s.elevation[1, 1] == scenario().elevation[1, 1]  # the input is untouched


def test_pond_by_depth_and_bad_specs():
    s = scenario()
    t = RetentionPond(box(X0 + 50, Y0 - 150, X0 + 150, Y0 - 60), depth_m=2.0).apply(s)
    assert np.allclose((s.elevation - t.elevation)[6:15, 5:15], 2.0)
    with pytest.raises(MeasureError, match="exactly one of volume_m3 or depth_m"):
        RetentionPond(box(0, 0, 1, 1))
    with pytest.raises(MeasureError, match="covers no active cell"):
        RetentionPond(box(0, 0, 1, 1), depth_m=1).apply(s)


def test_levee_raises_exactly_the_cells_the_line_crosses():
    s = scenario()
    line = LineString([(X0 + 12.3, Y0 - 181.7), (X0 + 97.1, Y0 - 3.9), (X0 + 283.4, Y0 - 44.6)])
    t = Levee(line, crest_height_m=1.5).apply(s)
    crossed = np.array([[cell_box(r, c).intersects(line) for c in range(30)]
                        for r in range(20)])
    rise = t.elevation - s.elevation
    assert np.allclose(rise[crossed], 1.5)
    assert np.all(rise[~crossed & s.active] == 0)
    # a 4-connected chain: water cannot slip through diagonally
    crest = Levee(line, crest_elevation_m=4.0).apply(s)
    raised = crest.elevation >= 4.0
    assert np.array_equal(raised & crossed, crossed)
    assert np.all(crest.elevation[crossed] == np.maximum(s.elevation[crossed], 4.0))
    wide = Levee(line, crest_height_m=1.0, width_cells=3).cells(s)
    assert wide.sum() > crossed.sum() and np.all(wide[crossed])


def test_drainage_upgrade_adds_capacity_inside_the_polygon_only():
    s = scenario()
    poly = box(X0, Y0 - 100, X0 + 100, Y0)
    t = DrainageUpgrade(25.0, poly).apply(s)
    extra = t.drain_capacity_mm_h - s.drain_capacity_mm_h
    assert np.all(extra[:10, :10][s.active[:10, :10]] == 25.0)
    assert extra.sum() == 25.0 * 99  # 100 cells less the wall at (0, 0)
    everywhere = DrainageUpgrade(5.0).apply(s)
    assert np.all(everywhere.drain_capacity_mm_h[s.active] == 15.0)


def test_green_infrastructure_for_both_loss_models():
    poly = box(X0, Y0 - 100, X0 + 100, Y0)
    s = scenario(CurveNumber(np.full(GRID.shape, 90.0)))
    t = GreenInfrastructure(poly, curve_number=75).apply(s)
    assert np.all(t.losses.cn[1:10, 1:10] == 75) and np.all(t.losses.cn[10:] == 90)
    assert np.all(s.losses.cn == 90)
    t2 = GreenInfrastructure(poly, curve_number_reduction=10).apply(s)
    assert t2.losses.cn[5, 5] == 80
    g = scenario(GreenAmpt(np.full(GRID.shape, 2.0), 110.0, 0.3))
    t3 = GreenInfrastructure(poly, conductivity_factor=3).apply(g)
    assert t3.losses.conductivity_mm_h[5, 5] == 6.0 and t3.losses.conductivity_mm_h[15, 5] == 2
    with pytest.raises(MeasureError, match="not inputs.soil.green_ampt"):
        GreenInfrastructure(poly, conductivity_mm_h=20).apply(s)


def test_raised_floors_change_only_the_chosen_buildings():
    s = scenario()
    t = RaisedFloors(0.5, use_classes=["residential"]).apply(s)
    assert [b.floor_height_m for b in t.buildings] == [0.5, 0.7, 0.0]
    assert [b.floor_height_m for b in s.buildings] == [0.0, 0.2, 0.0]
    near = Point(X0 + 20, Y0 - 20).buffer(30)
    t2 = RaisedFloors(0.3, polygon=near).apply(s)
    assert [b.floor_height_m for b in t2.buildings] == [0.3, 0.2, 0.3]


def test_package_applies_in_order_and_sums_costs():
    s = scenario()
    pkg = Package("full", [DrainageUpgrade(10.0, capital_cost=1e6, annual_cost=2e4),
                           RaisedFloors(0.5, capital_cost=5e5)])
    assert pkg.capital_cost == 1.5e6 and pkg.annual_cost == 2e4
    t = pkg.apply(s)
    assert np.all(t.drain_capacity_mm_h[s.active] == 20.0)
    assert all(b.floor_height_m >= 0.5 for b in t.buildings)
    assert Package("baseline").apply(s).elevation is not s.elevation


def test_measures_from_study_dicts_and_their_errors(tmp_path):
    poly = [[X0, Y0], [X0 + 100, Y0], [X0 + 100, Y0 - 100], [X0, Y0 - 100]]
    pkg = package_from_config("full", [
        {"type": "retention_pond", "polygon": poly, "volume_m3": 500, "capital_cost": 1e5},
        {"type": "levee", "line": [[X0, Y0 - 150], [X0 + 300, Y0 - 150]],
         "crest_height_m": 1.2, "capital_cost": 2e5, "annual_cost": 1e3},
        {"type": "raised_floors", "raise_m": 0.4, "use_classes": "residential",
         "capital_cost": 0},
    ])
    assert [type(m).__name__ for m in pkg.measures] == ["RetentionPond", "Levee", "RaisedFloors"]
    assert pkg.capital_cost == 3e5 and pkg.measures[2].use_classes == ["residential"]
    cases = [
        ({"type": "pond"}, r"packages.p\[0\].type: 'pond'"),
        ({"type": "drainage_upgrade", "extra_mm_h": -5, "capital_cost": 1},
         r"packages.p\[0\].extra_mm_h: must be > 0"),
        ({"type": "drainage_upgrade", "extra_mm_h": 5}, r"packages.p\[0\].capital_cost: missing"),
        ({"type": "levee", "crest_height_m": 1, "capital_cost": 1},
         r"packages.p\[0\].line: missing"),
        ({"type": "levee", "line": [[0, 0], [1, 1]], "crest": 1, "capital_cost": 1},
         r"packages.p\[0\].crest: not a field of levee"),
        ({"type": "raised_floors", "raise_m": "x", "capital_cost": 1},
         r"packages.p\[0\].raise_m: not a number"),
        ({"type": "retention_pond", "polygon": poly, "capital_cost": 1},
         r"packages.p\[0\]: give exactly one of volume_m3 or depth_m"),
    ]
    for d, msg in cases:
        with pytest.raises(MeasureError, match=msg):
            package_from_config("p", [d])
    m = measure_from_dict({"type": "green_infrastructure", "polygon": poly, "curve_number": 70,
                           "capital_cost": 3, "name": "bioswales"})
    assert m.name == "bioswales" and m.curve_number == 70
