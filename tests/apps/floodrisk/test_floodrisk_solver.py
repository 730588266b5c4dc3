"""The inundation solver's parts against hand-computed answers: losses (Green-Ampt,
SCS curve number), drains, inflow volumes, open edges, walls, outputs, input errors,
and the two engines giving the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from cityos.apps.floodrisk.losses import (
    CurveNumber,
    GreenAmpt,
    curve_number_runoff,
    green_ampt_ponded_time_s,
)
from cityos.apps.floodrisk.rainfall import Hyetograph
from cityos.apps.floodrisk.solver import (
    Domain,
    Forcing,
    Inflow,
    SolverOptions,
    WaterLevelBoundary,
    simulate,
)

HOUR = 3600.0


class UncheckedStorm:
    """A hyetograph that skips :class:`Hyetograph`'s checks: the solver's own must
    catch what it lets through."""

    def __init__(self, edges_s, intensity_mm_h):
        self.edges_s = np.asarray(edges_s, dtype=float)
        self.intensity_mm_h = np.asarray(intensity_mm_h, dtype=float)


def flat(ny=4, nx=5):
    return np.zeros((ny, nx))


def test_green_ampt_ponded_infiltration_follows_the_exact_solution():
    # a deep pond over a flat closed plot: infiltration is at capacity throughout
    soil = GreenAmpt(conductivity_mm_h=10.0, suction_mm=110.0, moisture_deficit=0.3)
    result = simulate(Domain(flat(), 10.0, 0.03), Forcing(initial_depth=np.full((4, 5), 1.0),
                                                         losses=soil),
                      SolverOptions(duration_s=2 * HOUR, max_dt_s=5.0))
    infiltrated_mm = 1000.0 * (1.0 - result.final_depth_m[0, 0])
    # the exact Green-Ampt time to take that depth is the simulated time
    assert green_ampt_ponded_time_s(infiltrated_mm, 10.0, 110.0, 0.3) == pytest.approx(
        2 * HOUR, rel=2e-3)
    assert result.volume.infiltration_m3 == pytest.approx(
        infiltrated_mm / 1000.0 * 20 * 100.0, rel=1e-9)


def test_curve_number_abstraction_matches_the_handbook_equation():
    cn, rain_mm = 75.0, 80.0
    storm = Hyetograph([0.0, HOUR], [rain_mm])
    result = simulate(Domain(flat(), 10.0, 0.03), Forcing(rain=storm, losses=CurveNumber(cn)),
                      SolverOptions(duration_s=HOUR))
    s_mm = 25400.0 / cn - 254.0
    runoff_mm = (rain_mm - 0.2 * s_mm) ** 2 / (rain_mm + 0.8 * s_mm)  # 27.9 mm
    np.testing.assert_allclose(result.final_depth_m * 1000.0, runoff_mm, rtol=1e-9)
    assert curve_number_runoff(rain_mm, s_mm, 0.2 * s_mm) == pytest.approx(runoff_mm)
    assert curve_number_runoff(10.0, s_mm, 0.2 * s_mm) == 0.0  # below Ia: nothing runs off


def test_drains_take_their_capacity_until_the_water_is_gone():
    start = np.full((4, 5), 0.05)
    result = simulate(Domain(flat(), 10.0, 0.03), Forcing(initial_depth=start,
                                                         drain_capacity_mm_h=36.0),
                      SolverOptions(duration_s=HOUR, max_dt_s=5.0, duration_depth_m=0.02))
    np.testing.assert_allclose(result.final_depth_m, 0.05 - 0.036, atol=1e-12)
    # above 2 cm for (50 - 20) mm / 36 mm/h = 50 min
    np.testing.assert_allclose(result.duration_above_s, 3000.0, atol=5.0)
    result = simulate(Domain(flat(), 10.0, 0.03), Forcing(initial_depth=start,
                                                         drain_capacity_mm_h=100.0),
                      SolverOptions(duration_s=HOUR))
    assert np.all(result.final_depth_m == 0.0)
    assert result.volume.drained_m3 == pytest.approx(0.05 * 20 * 100.0, rel=1e-12)


def test_point_inflow_volume_is_the_hydrograph_integral():
    inflow = Inflow(np.array([[1, 1], [1, 2]]), np.array([0.0, 600.0, 1800.0]),
                    np.array([0.0, 2.0, 0.5]))
    result = simulate(Domain(flat(6, 8), 5.0, 0.03), Forcing(inflows=[inflow]),
                      SolverOptions(duration_s=HOUR))
    expected = 0.5 * 2.0 * 600 + 0.5 * (2.0 + 0.5) * 1200 + 0.5 * 1800  # held at 0.5
    assert result.volume.inflow_m3 == pytest.approx(expected, rel=1e-12)
    assert np.nansum(result.final_depth_m) * 25.0 == pytest.approx(expected, rel=1e-10)
    assert result.first_wet_s[1, 1] < result.first_wet_s[5, 7]


def test_open_edge_lets_water_out_and_a_wall_holds_it_back():
    z = np.tile(np.linspace(1.0, 0.0, 12), (6, 1))  # sloping down to the east
    z[:, 6] = np.nan  # a wall across the slope
    start = np.where(np.isfinite(z), 0.2, 0.0)
    result = simulate(Domain(z, 10.0, 0.03, {"east": "open"}), Forcing(initial_depth=start),
                      SolverOptions(duration_s=2 * HOUR))
    v = result.volume
    east_side = 0.2 * 6 * 5 * 100.0
    assert v.outflow_m3 == pytest.approx(east_side, rel=0.02)  # the east side drained
    assert np.nanmax(result.final_depth_m[:, 7:]) < 0.01
    # the west side is trapped against the wall and keeps its water
    assert np.nansum(result.final_depth_m[:, :6]) * 100.0 == pytest.approx(0.2 * 36 * 100.0,
                                                                           rel=1e-9)
    assert abs(v.error_share) < 1e-12
    assert np.all(np.isnan(result.final_depth_m[:, 6]))


def test_outputs_record_maximum_first_wet_and_snapshot():
    west = WaterLevelBoundary(np.array([0.0, 1800.0, HOUR]), np.array([0.0, 0.5, 0.0]))
    result = simulate(Domain(flat(2, 20), 10.0, 0.03, {"west": west}), Forcing(),
                      SolverOptions(duration_s=HOUR, snapshot_times_s=(1800.0,)))
    near, far = result.first_wet_s[0, 0], result.first_wet_s[0, 10]
    assert 0 < near < far < HOUR
    assert np.all(result.max_depth_m >= result.final_depth_m)
    assert result.max_depth_m[0, 0] == pytest.approx(0.5, abs=0.05)
    assert np.all(result.max_depth_m >= result.snapshots[1800.0] - 1e-15)
    assert np.nanmax(result.max_speed_m_s) > 0.1
    assert np.all(result.duration_above_s[0, :2] > 0)


def test_engines_agree():
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:18, 0:22]
    z = 0.002 * x * 10 + 0.3 * np.sin(y / 3.0) + rng.normal(0, 0.03, (18, 22))
    z[5, 3:9] = np.nan
    soil = GreenAmpt(np.full((18, 22), 4.0), 90.0, 0.25)
    forcing = Forcing(rain=Hyetograph([0, 1200, 2400], [60.0, 20.0]), losses=soil,
                      drain_capacity_mm_h=np.full((18, 22), 3.0),
                      inflows=[Inflow(np.array([[9, 0]]), np.array([0.0, 3000.0]),
                                      np.array([0.5, 0.0]))])
    domain = Domain(z, 10.0, np.full((18, 22), 0.04), {"west": "open", "east": "open"})
    runs = [simulate(domain, forcing, SolverOptions(duration_s=HOUR, engine=engine, theta=0.9))
            for engine in ("numpy", "numba")]
    a, b = runs
    assert a.steps == b.steps
    for name in ("max_depth_m", "max_speed_m_s", "first_wet_s", "duration_above_s",
                 "final_depth_m"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    for name in ("rain_m3", "inflow_m3", "infiltration_m3", "drained_m3", "outflow_m3",
                 "final_m3"):
        assert getattr(a.volume, name) == pytest.approx(getattr(b.volume, name), rel=1e-9)
    assert a.volume.outflow_m3 > 0 and a.volume.infiltration_m3 > 0


@pytest.mark.parametrize(("change", "field"), [
    ({"elevation": np.zeros(5)}, "domain.elevation"),
    ({"cell_size": -1.0}, "domain.cell_size"),
    ({"manning": np.zeros((3, 3))}, "domain.manning"),
    ({"boundary": {"up": "open"}}, "domain.boundary"),
    ({"boundary": {"west": "leaky"}}, "domain.boundary.west"),
])
def test_bad_domain_is_reported_by_field(change, field):
    spec = {"elevation": np.zeros((3, 3)), "cell_size": 5.0, "manning": 0.03,
            "boundary": "closed"} | change
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        simulate(Domain(**spec), Forcing(), SolverOptions(duration_s=60.0))


@pytest.mark.parametrize(("forcing", "field"), [
    (Forcing(rain=UncheckedStorm([0, 10], [-1.0])), "rain"),
    (Forcing(initial_depth=np.full((3, 3), -0.1)), "forcing.initial_depth"),
    (Forcing(drain_capacity_mm_h=np.ones((2, 2))), "forcing.drain_capacity_mm_h"),
    (Forcing(inflows=[Inflow(np.array([[5, 5]]), np.array([0.0]), np.array([1.0]))]),
     r"forcing.inflows\[0\].cells"),
    (Forcing(inflows=[Inflow(np.array([[1, 1]]), np.array([0.0, 0.0]), np.array([1.0, 1.0]))]),
     r"forcing.inflows\[0\]: times must increase"),
    (Forcing(losses=CurveNumber(120.0)), "curve_number.cn"),
    (Forcing(losses=GreenAmpt(5.0, 100.0, 1.5)), "green_ampt.moisture_deficit"),
])
def test_bad_forcing_is_reported_by_field(forcing, field):
    with pytest.raises(ValueError, match=field):
        simulate(Domain(np.zeros((3, 3)), 5.0, 0.03), forcing, SolverOptions(duration_s=60.0))


def test_bad_options_are_reported():
    with pytest.raises(ValueError, match="options.engine"):
        simulate(Domain(flat(), 5.0, 0.03), Forcing(), SolverOptions(60.0, engine="gpu"))
    with pytest.raises(ValueError, match="options.duration_s"):
        simulate(Domain(flat(), 5.0, 0.03), Forcing(), SolverOptions(0.0))
