"""The demo catchment: its files load as a study, its packages apply, a tiny one runs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cityos.apps.floodrisk.catchment import write_demo_catchment
from cityos.apps.floodrisk.inputs import DesignInflow, load_scenario
from cityos.apps.floodrisk.losses import CurveNumber
from cityos.apps.floodrisk.measures import Levee, RetentionPond, package_from_config
from cityos.apps.floodrisk.rainfall import design_storm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    path = write_demo_catchment(d, size=(40, 40), cell_size_m=25.0, seed=3)
    study = yaml.safe_load(path.read_text())
    return d, study, load_scenario(study, d)


def test_written_study_loads_as_a_scenario(tiny):
    d, study, s = tiny
    assert {p.name for p in d.iterdir()} >= {"dem.tif", "landcover.tif", "buildings.geojson",
                                              "roads.geojson", "drains.geojson",
                                              "river_inflow.csv", "study.yaml"}
    assert s.grid.crs.to_epsg() == 32748 and s.grid.shape == (40, 40)
    assert s.active.all() and np.nanmin(s.elevation) < 0 < np.nanmax(s.elevation)
    assert isinstance(s.losses, CurveNumber) and 80 <= s.losses.cn.min() <= s.losses.cn.max() <= 100
    assert s.water.sum() > 0 and np.all(s.losses.cn[s.water] == 100)
    assert s.drain_capacity_mm_h.min() > 0
    assert len(s.buildings) > 100
    assert {b.use_class for b in s.buildings} == {"residential", "commercial", "industrial"}
    assert all(b.value > 0 and b.people > 0 for b in s.buildings)
    assert not any(s.water[s.grid.rowcol(b.footprint.centroid.x, b.footprint.centroid.y)]
                   for b in s.buildings)
    (river,) = s.design_inflows
    assert isinstance(river, DesignInflow)
    assert np.all(s.water[tuple(river.cells.T)])  # the inflow enters the river channel
    # the upstream flood grows with the return period
    peaks = [river.at(T).discharge_m3_s.max() for T in study["return_periods"]]
    assert peaks == sorted(peaks) and len(set(peaks)) == len(peaks)
    assert study["return_periods"] == [2, 5, 10, 25, 50, 100]
    assert set(study["packages"]) == {"baseline", "drainage", "full"}


def test_demo_building_values_floors_and_costs(tiny):
    d, study, s = tiny
    # structure + contents per m2 of floor, times storeys: 350 x 1.5, 450 x 2, 300 x 2.5
    expected = {"residential": (525.0, 2, 0.2), "commercial": (900.0, 3, 0.15),
                "industrial": (750.0, 1, 0.3)}
    for b in s.buildings:
        per_m2, storeys, floor = expected[b.use_class]
        assert b.value == pytest.approx(per_m2 * storeys * b.area_m2, rel=1e-9), b.id
        assert b.floor_height_m == floor
    homes = sum(b.use_class == "residential" for b in s.buildings)
    (raised,) = [m for m in study["packages"]["full"] if m["type"] == "raised_floors"]
    assert raised["capital_cost"] == round(homes * 1650.0, -3)
    assert study["economics"]["discount_rate"] == 0.06


def test_packages_apply_to_the_demo(tiny):
    d, study, s = tiny
    full = package_from_config("full", study["packages"]["full"], base_dir=d, crs=s.grid.crs)
    kinds = {type(m).__name__ for m in full.measures}
    assert kinds == {"RetentionPond", "Levee", "DrainageUpgrade", "GreenInfrastructure",
                     "RaisedFloors"}
    assert full.capital_cost > 0 and full.annual_cost > 0
    t = full.apply(s)
    ponds = [m for m in full.measures if isinstance(m, RetentionPond)]
    levees = [m for m in full.measures if isinstance(m, Levee)]
    assert np.all(t.elevation[levees[0].cells(s)] > s.elevation[levees[0].cells(s)])
    # levees stay off the river channel: the floodway stays open
    for lv in levees:
        assert not (lv.cells(s) & s.water).any()
    excavated = np.clip(s.elevation - t.elevation, 0, None).sum() * s.grid.cell_area
    assert excavated == pytest.approx(sum(p.volume_m3 for p in ponds), rel=1e-6)
    assert t.drain_capacity_mm_h.sum() > s.drain_capacity_mm_h.sum()
    assert np.mean([b.floor_height_m for b in t.buildings]) > np.mean(
        [b.floor_height_m for b in s.buildings])


def test_tiny_demo_runs_through_the_solver(tiny):
    from cityos.apps.floodrisk.solver import SolverOptions, simulate

    d, study, s = tiny
    rain = design_storm({**study["rainfall"], "duration_min": 30, "step_min": 10}, 50)
    result = simulate(s.domain(), s.forcing(rain), SolverOptions(duration_s=1800.0))
    assert abs(result.volume.error_share) < 1e-6
    assert result.volume.inflow_m3 > 0 and result.volume.rain_m3 > 0
    assert (result.max_depth_m > 0.1).any()
