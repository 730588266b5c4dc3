"""Depth-damage curves and event impacts, against hand-computed cases."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from shapely.geometry import LineString, box

from cityos.apps.floodrisk.damage import (
    DamageCurveError,
    DepthDamageCurve,
    building_depths,
    catalogue_from_config,
    event_impact,
    flooded_road_length,
    footprint_cells,
    inundated_area,
    jrc_asia,
    read_curves,
)
from cityos.apps.floodrisk.grid import GridSpec

# 10 x 10 cells of 10 m; the top-left corner at (0, 100): cell (r, c) spans
# x in [10c, 10c + 10], y in [90 - 10r, 100 - 10r]
GRID = GridSpec.from_origin(0.0, 100.0, 10.0, (10, 10), "EPSG:32748")


@dataclass
class B:  # the fields of inputs.Building that impacts read
    id: str
    footprint: object
    use_class: str
    value: float
    floor_height_m: float = 0.0
    people: float = 0.0


def cell_box(row, col, inset=1.0):
    """A footprint inside one cell, clear of the neighbours' centres."""
    x0, y1 = 10 * col, 100 - 10 * row
    return box(x0 + inset, y1 - 10 + inset, x0 + 10 - inset, y1 - inset)


# ----------------------------------------------------------------------- curves
def test_jrc_asia_published_points():
    cat = jrc_asia()
    assert cat.classes() == ["agriculture", "commercial", "industrial", "infrastructure",
                             "residential", "transport"]
    # Huizinga et al. 2017, Asia, at 1 m and 2 m
    at_1m = {"residential": 0.494, "commercial": 0.538, "industrial": 0.482,
             "transport": 0.572, "infrastructure": 0.373, "agriculture": 0.370}
    for cls, value in at_1m.items():
        assert cat.curve(cls)(1.0) == pytest.approx(value)
    assert cat.curve("residential")(2.0) == pytest.approx(0.721)
    assert cat.curve("roads") is cat.curve("infrastructure")  # alias


def test_curve_is_piecewise_linear_and_clamped():
    res = jrc_asia().curve("residential")
    assert res(0.25) == pytest.approx(0.327 / 2)
    assert res(2.5) == pytest.approx((0.721 + 0.870) / 2)
    assert res(9.0) == pytest.approx(1.0)
    np.testing.assert_allclose(res(np.array([-1.0, 0.0])), [0.0, 0.0])


def test_bad_curves_are_named():
    with pytest.raises(DamageCurveError, match="'x'.*increase"):
        DepthDamageCurve("x", [0, 1, 1], [0, 0.5, 0.6])
    with pytest.raises(DamageCurveError, match="'y'.*0..1"):
        DepthDamageCurve("y", [0, 1], [0, 1.5])


def test_user_curves_csv_and_yaml(tmp_path):
    csv_path = tmp_path / "curves.csv"
    csv_path.write_text("# local survey\ndepth_m,shophouse\n0,0\n1,0.4\n2,0.9\n")
    yaml_path = tmp_path / "curves.yaml"
    yaml_path.write_text("residential:\n  depth_m: [0, 2]\n  fraction: [0, 1]\n")
    cat = catalogue_from_config(["jrc-asia", "curves.csv", "curves.yaml"], tmp_path)
    assert cat.curve("shophouse")(1.5) == pytest.approx(0.65)
    assert cat.curve("residential")(1.0) == pytest.approx(0.5)  # the user's replaces JRC
    assert cat.curve("commercial")(1.0) == pytest.approx(0.538)
    bad = tmp_path / "bad.csv"
    bad.write_text("depth_m,a\n0,0\n1,oops\n")
    with pytest.raises(DamageCurveError, match="bad.csv: data row 3"):
        read_curves(bad)


# ------------------------------------------------------------------ exposure
def test_footprint_cells_and_halo():
    two_cells = box(21, 71, 39, 79)  # row 2, cols 2-3: centres (25, 75), (35, 75)
    small = box(26, 51, 33, 59)      # row 4, between the centres of cols 2 and 3
    cells = footprint_cells([two_cells, small], GRID, halo_m=0.0)
    assert sorted(cells[0].tolist()) == [22, 23]
    assert cells[1].tolist() == [42]  # no centre inside: the cell under it
    halo = footprint_cells([small], GRID)  # default: half a cell (5 m)
    assert sorted(halo[0].tolist()) == [42, 43]


def test_building_depth_max_and_mean():
    depth = np.zeros((10, 10))
    depth[2, 2], depth[2, 3] = 1.2, 0.6
    cells = footprint_cells([box(21, 71, 39, 79)], GRID, halo_m=0.0)
    assert building_depths(depth, cells)[0] == pytest.approx(1.2)
    assert building_depths(depth, cells, statistic="mean")[0] == pytest.approx(0.9)


# ------------------------------------------------------------------- impacts
def test_event_impact_hand_computed():
    depth = np.zeros((10, 10))
    depth[1, 1] = 1.2    # A: residential, floor 0.2 -> 1.0 m above floor
    depth[5, 5] = 0.25   # B: commercial, floor 0 -> 0.25 m
    depth[8, 2] = 0.10   # C: industrial, floor 0.3 -> below the floor
    buildings = [B("A", cell_box(1, 1), "residential", 1e6, 0.2, 4),
                 B("B", cell_box(5, 5), "Commercial", 2e6, 0.0, 10),
                 B("C", cell_box(8, 2), "industry", 5e6, 0.3, 20),
                 B("D", cell_box(0, 9), "residential", 1e6, 0.0, 3)]  # dry
    impact = event_impact(depth, GRID, buildings, jrc_asia())
    assert impact.damage_by_class["residential"] == pytest.approx(0.494e6)
    assert impact.damage_by_class["commercial"] == pytest.approx(2e6 * 0.377 / 2)
    assert impact.damage_by_class["industrial"] == 0.0
    assert impact.damage == pytest.approx(494_000 + 377_000)
    assert impact.buildings_affected == 2 and impact.buildings_total == 4
    assert impact.people_affected == 14
    np.testing.assert_allclose(impact.building_depth_m, [1.0, 0.25, -0.2, 0.0])
    # inundated area: 2 cells above 10 cm (0.10 itself is not above), 1 above 50 cm
    assert impact.inundated_area_m2 == {0.1: 200.0, 0.5: 100.0}
    assert impact.area_above(0.5) == 100.0


def test_unknown_use_class_names_the_building():
    with pytest.raises(KeyError, match="building X7: use class 'castle'"):
        event_impact(np.zeros((10, 10)), GRID, [B("X7", cell_box(0, 0), "castle", 1.0)],
                     jrc_asia())


def test_inundated_area_leaves_out_permanent_water():
    depth = np.zeros((10, 10))
    depth.flat[:7] = 0.8
    depth.flat[7:19] = 0.3
    depth[9, 9] = np.nan  # no-flow cell
    assert inundated_area(depth, 10.0) == {0.1: 1900.0, 0.5: 700.0}
    river = np.zeros((10, 10), bool)
    river.flat[:2] = True
    assert inundated_area(depth, 10.0, permanent_water=river) == {0.1: 1700.0, 0.5: 500.0}


def test_flooded_road_length_exact():
    depth = np.zeros((10, 10))
    depth[3, 2:6] = 0.5   # four cells of row 3 flooded above 0.3 m
    depth[3, 7] = 0.2     # shallow: passable
    depth[2, 2] = depth[1, 1] = 0.4  # on the diagonal, touching at a corner
    along_row = LineString([(0, 65), (100, 65)])  # through the centres of row 3
    diagonal = LineString([(0, 100), (100, 0)])   # through cells (r, r)
    flooded, total = flooded_road_length([along_row, diagonal], depth, GRID)
    assert total == pytest.approx(100 + 100 * math.sqrt(2))
    # row: 40 m; diagonal: cells (1,1), (2,2), (3,3) -> 3 x 10 sqrt(2)
    assert flooded == pytest.approx(40 + 30 * math.sqrt(2))
    impact = event_impact(depth, GRID, [], jrc_asia(), roads=[along_row], road_depth_m=0.1)
    assert impact.road_flooded_m == pytest.approx(50.0)
    canal = np.zeros((10, 10), bool)
    canal[:, 3] = True  # the road crosses the canal on a bridge
    flooded, _ = flooded_road_length([along_row], depth, GRID, permanent_water=canal)
    assert flooded == pytest.approx(30.0)
