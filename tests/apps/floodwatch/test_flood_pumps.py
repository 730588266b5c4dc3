"""Drainage-pump control: the controllers on crafted level series with hand-checked
switch times, the forecasters against analytical answers, then the controllers driving
EPA SWMM: the demo catchment and pystorms' ``beta`` scenario scored by its own metric.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cityos.apps.floodwatch import demo_catchment as demo
from cityos.apps.floodwatch.pump_control import (
    LevelTrendForecaster,
    PredictiveController,
    PumpControlError,
    PumpRule,
    RainInflowForecaster,
    RuleController,
    StateHistory,
    fit_linear_reservoir,
    linear_reservoir_inflow,
)
from cityos.apps.floodwatch.swmm_eval import (
    BETA_SENSITIVE_NODES,
    SwmmEvaluationError,
    beta_rules,
    demo_rules,
    evaluate_demo_catchment,
    evaluate_pystorms_beta,
    read_inp_sections,
)

T0 = 1_700_000_000.0  # an arbitrary epoch origin for the crafted series


def run(controller, times, levels, signal="well"):
    """Feed a level series; return the settings after each update."""
    out = []
    for t, level in zip(times, levels, strict=True):
        out.append(controller.update(T0 + t, {signal: level}))
    return out


def switch_times(controller):
    return [(d.t - T0, d.pump, d.setting) for d in controller.decisions]


# -- rule controller ----------------------------------------------------------------------
def test_rule_hysteresis_and_minimum_on_off_times():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=1.0, min_on_s=300, min_off_s=600)
    ctl = RuleController([rule])
    levels = np.array([
        0.5, 2.0,              # 0, 60: 2.0 is not above the on-level: stays off
        2.1,                   # 120: above on-level -> start
        0.9, 0.8, 0.8, 0.8,    # 180-360: below off-level but inside the 300 s minimum run
        0.8,                   # 420: 300 s after the start -> stop
        2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5,  # 480-960: high, but resting 600 s
        2.5,                   # 1020: 600 s after the stop -> start
        1.5, 1.5, 1.5, 1.5,    # 1080-1260: between the levels from above: stays on
        0.99,                  # 1320: below off-level, ran 300 s -> stop
        1.5, 1.9,              # 1380, 1440: off
    ])
    times = 60.0 * np.arange(levels.size)
    settings = run(ctl, times, levels)
    assert switch_times(ctl) == [(120, "P1", 1.0), (420, "P1", 0.0), (1020, "P1", 1.0),
                                 (1320, "P1", 0.0)]
    on = [s["P1"] for s in settings]
    assert on[:2] == [0.0] * 2 and on[2:7] == [1.0] * 5 and on[7:17] == [0.0] * 10
    assert on[17:22] == [1.0] * 5 and on[22:] == [0.0] * 3
    assert ctl.decisions[0].reason == "well 2.100 above on-level 2.000"
    assert "below off-level" in ctl.decisions[1].reason


def test_rule_works_on_an_irregular_clock_and_caps_starts_per_hour():
    rule = PumpRule("P1", "well", on_level=1.0, off_level=0.0, max_starts_per_hour=2)
    ctl = RuleController([rule])
    # Level alternates high/low at irregular times; only two starts fit in any hour.
    times = [0.0, 7.0, 130.0, 131.5, 2000.0, 2100.0, 3599.0, 3600.0, 3601.0, 3700.0, 3800.0]
    levels = [2.0, -1.0, 2.0, -1.0, 2.0, -1.0, 2.0, 2.0, -1.0, 2.0, 2.0]
    run(ctl, times, levels)
    # Starts at 0 and 130; the high at 2000 and 3599 is refused (two starts in the last
    # hour); at 3600 the start at 0 has aged out (a start exactly 3600 s ago no longer
    # counts); at 3700 the one at 130 is still inside the hour, at 3800 it is not.
    assert switch_times(ctl) == [(0, "P1", 1.0), (7, "P1", 0.0), (130, "P1", 1.0),
                                 (131.5, "P1", 0.0), (3600, "P1", 1.0), (3601, "P1", 0.0),
                                 (3800, "P1", 1.0)]


def test_inhibit_trips_a_running_pump_at_once_and_blocks_starts():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=1.0, min_on_s=900,
                    inhibit="downstream", inhibit_level=3.0)
    ctl = RuleController([rule])
    feed = [(0, 2.5, 1.0), (60, 2.5, 3.2), (120, 2.5, 3.5), (180, 2.5, 2.9)]
    for t, well, downstream in feed:
        ctl.update(T0 + t, {"well": well, "downstream": downstream})
    # Started at 0; tripped at 60 although the 900 s minimum run was not over; the
    # interlock holds it off at 120; it restarts at 180 once the downstream level fell.
    assert [(d.t - T0, d.setting) for d in ctl.decisions] == [(0, 1.0), (60, 0.0), (180, 1.0)]
    assert ctl.decisions[1].reason == "inhibit downstream 3.200 above 3.000"


def test_gate_rules_use_their_own_settings():
    gate = PumpRule("R2", "node", on_level=5.0, off_level=4.0, on_setting=0.0, off_setting=1.0)
    ctl = RuleController([gate])
    assert ctl.update(T0, {"node": 4.5}) == {"R2": 1.0}
    assert ctl.update(T0 + 10, {"node": 5.5}) == {"R2": 0.0}
    assert ctl.is_on("R2")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"on_level": 1.0, "off_level": 1.0}, "off_level"),
        ({"on_level": float("nan"), "off_level": 1.0}, "on_level"),
        ({"on_level": 2.0, "off_level": 1.0, "min_on_s": -1}, "min_on_s"),
        ({"on_level": 2.0, "off_level": 1.0, "max_starts_per_hour": 0}, "max_starts_per_hour"),
        ({"on_level": 2.0, "off_level": 1.0, "inhibit": "x"}, "inhibit_level"),
        ({"on_level": 2.0, "off_level": 1.0, "early_level": 1.5}, "early_level"),
    ],
)
def test_bad_rules_name_the_field(kwargs, field):
    with pytest.raises(PumpControlError, match=field):
        PumpRule("P1", "well", **kwargs)


def test_bad_updates_name_the_field():
    ctl = RuleController([PumpRule("P1", "well", on_level=2.0, off_level=1.0)])
    assert isinstance(PumpControlError("x"), ValueError)
    with pytest.raises(PumpControlError, match="missing signal 'well'"):
        ctl.update(T0, {"other": 1.0})
    with pytest.raises(PumpControlError, match=r"levels\['well'\]"):
        ctl.update(T0, {"well": float("inf")})
    ctl.update(T0 + 10, {"well": 1.0})
    with pytest.raises(PumpControlError, match="backwards"):
        ctl.update(T0, {"well": 1.0})
    with pytest.raises(PumpControlError, match="unique"):
        RuleController([PumpRule("P1", "a", 2, 1), PumpRule("P1", "b", 2, 1)])


# -- predictive controller ----------------------------------------------------------------
RISE = 0.03  # m per minute, sampled every minute


def rising_series(n=80):
    return 60.0 * np.arange(n), RISE * np.arange(n)


def test_predictive_starts_earlier_than_rule_on_a_rising_level():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=0.5)
    times, levels = rising_series()
    plain = RuleController([rule])
    run(plain, times, levels)
    early = PredictiveController([rule], {"well": LevelTrendForecaster("well")})
    run(early, times, levels)
    # Rule: first level above 2.0 is 0.03 * 67 = 2.01 at minute 67.
    assert switch_times(plain) == [(67 * 60, "P1", 1.0)]
    # Predictive: the trend says +0.9 m in 30 min, so it starts once the level passes
    # 1.1 m: 0.03 * 37 = 1.11 at minute 37, thirty minutes ahead of the rule.
    assert switch_times(early) == [(37 * 60, "P1", 1.0)]
    assert "forecast 2.010 within 30 min" in early.decisions[0].reason


def test_predictive_with_a_short_lead_time_waits_longer():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=0.5)
    times, levels = rising_series()
    ctl = PredictiveController([rule], {"well": LevelTrendForecaster("well")}, lead_time_s=600)
    run(ctl, times, levels)
    # Ten minutes ahead: level + 0.3 > 2.0 first at 0.03 * 57 = 1.71.
    assert switch_times(ctl) == [(57 * 60, "P1", 1.0)]


def test_predictive_stops_only_when_level_and_forecast_are_low():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=1.0)

    def forecast(t, history):  # a rise is announced until minute 10, then calm
        return np.full(3, 3.0 if t - T0 < 600 else 0.0)

    ctl = PredictiveController([rule], {"well": forecast})
    for minute, level in enumerate([0.5, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]):
        ctl.update(T0 + 60 * minute, {"well": level})
    # Started at minute 0 on the forecast; below the off-level from then on, but held
    # on while the forecast stayed high; stopped at minute 10.
    assert switch_times(ctl) == [(0, "P1", 1.0), (600, "P1", 0.0)]
    assert ctl.decisions[1].reason.endswith("forecast 0.000 too")


def test_predictive_early_level_ignores_ordinary_refilling():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=0.5, early_level=2.5)
    times, levels = rising_series()
    ctl = PredictiveController([rule], {"well": LevelTrendForecaster("well")})
    run(ctl, times, levels)
    # The forecast must pass 2.5: level > 1.6, first 0.03 * 54 = 1.62.
    assert switch_times(ctl) == [(54 * 60, "P1", 1.0)]


def test_a_forecaster_returning_the_wrong_shape_is_refused():
    rule = PumpRule("P1", "well", on_level=2.0, off_level=0.5)
    ctl = PredictiveController([rule], {"well": lambda t, h: np.zeros(2)})
    with pytest.raises(PumpControlError, match="returned 2 levels, expected 3"):
        ctl.update(T0, {"well": 0.0})
    with pytest.raises(PumpControlError, match="no pump's trigger"):
        PredictiveController([rule], {"other": lambda t, h: np.zeros(3)})


# -- forecasters ----------------------------------------------------------------------------
def test_level_trend_extrapolates_a_line_exactly():
    history = StateHistory(3600)
    for k in range(20):
        history.append(T0 + 30 * k, {"well": 0.5 + 0.002 * 30 * k})
    f = LevelTrendForecaster("well", window_s=600)
    now = 0.5 + 0.002 * 30 * 19
    np.testing.assert_allclose(f(T0 + 570, history), now + 0.002 * np.array([600, 1200, 1800]),
                               rtol=0, atol=1e-9)
    short = StateHistory(3600)
    short.append(T0, {"well": 1.0})
    assert np.all(np.isnan(f(T0, short)))


def test_linear_reservoir_matches_the_analytical_step_response():
    t = np.arange(0, 7200, 60.0)
    rain = np.full(t.size, 36.0)  # 36 mm/h = 1e-5 m/s
    q = linear_reservoir_inflow(t, rain, area_m2=2e5, lag_s=900.0)
    np.testing.assert_allclose(q, 2.0 * (1 - np.exp(-t / 900.0)), rtol=1e-12, atol=1e-12)


def test_fit_linear_reservoir_recovers_the_parameters():
    t = np.arange(0, 4 * 3600, 60.0)
    rain = np.where((t > 600) & (t < 2400), 30.0, 0.0) + np.where(t > 7200, 10.0, 0.0)
    truth = linear_reservoir_inflow(t, rain, area_m2=1.5e5, lag_s=1200.0)
    noise = np.random.default_rng(3).normal(0.0, 0.01, t.size)
    area, lag = fit_linear_reservoir(t, rain, truth + noise)
    assert area == pytest.approx(1.5e5, rel=0.01)
    assert lag == pytest.approx(1200.0, rel=0.02)


def test_rain_forecaster_is_a_mass_balance():
    # Steady rain long enough that the reservoir is at equilibrium: inflow = A i.
    rain_t = T0 + np.arange(0, 6 * 3600, 300.0)
    rain = np.full(rain_t.size, 18.0)  # 5e-6 m/s over 1e5 m2 -> 0.5 m3/s
    f = RainInflowForecaster("well", rain_t, rain, area_m2=1e5, lag_s=600.0,
                             storage_area_m2=100.0, outflow_signal="out")
    history = StateHistory()
    t = T0 + 3 * 3600
    history.append(t, {"well": 1.0, "out": 0.3})
    expected = 1.0 + (0.5 - 0.3) * np.array([600, 1200, 1800]) / 100.0
    np.testing.assert_allclose(f(t, history), expected, rtol=1e-6)
    # With the duty pump's 0.7 m3/s as the floor the well falls instead.
    g = RainInflowForecaster("well", rain_t, rain, area_m2=1e5, lag_s=600.0,
                             storage_area_m2=100.0, outflow_signal="out",
                             min_outflow_m3_per_s=0.7)
    assert np.all(np.diff(g(t, history)) < 0)


# -- the demo catchment in SWMM -------------------------------------------------------------
def test_demo_inp_reads_back_in_pyswmm(tmp_path):
    from pyswmm import Links, Nodes, Simulation

    storm = demo.design_storm()
    assert storm.intensity_mm_per_h.max() == pytest.approx(60.0)
    path = demo.write_demo_catchment(tmp_path / "demo.inp", storm)
    with Simulation(str(path)) as sim:
        nodes, links = Nodes(sim), Links(sim)
        for name in (*demo.SENSOR_NODES, demo.WET_WELL, "OF-river"):
            assert name in nodes
        assert all(links[p].is_pump() for p in demo.PUMPS)
        assert nodes["J-market"].invert_elevation == pytest.approx(1.4)
        for _ in sim:
            pass
        flooded = nodes["J-market"].statistics["flooding_volume"]
        routing_error = sim.flow_routing_error
    assert flooded > 100.0  # as built, the storm floods the market
    assert abs(routing_error) < 1.0  # percent
    sections = read_inp_sections(path)
    assert {row[0] for row in sections["PUMPS"]} == set(demo.PUMPS)


def test_demo_storm_and_paths_are_checked(tmp_path):
    with pytest.raises(ValueError, match="peak_mm_per_h"):
        demo.design_storm(-1.0)
    with pytest.raises(ValueError, match="intensity_mm_per_h"):
        demo.DesignStorm(np.array([0.0, 300.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="path"):
        demo.write_demo_catchment(tmp_path / "missing" / "x.inp")
    with pytest.raises(SwmmEvaluationError, match="strategies"):
        evaluate_demo_catchment(strategies=("manual",))


@pytest.fixture(scope="module")
def demo_eval():
    return evaluate_demo_catchment()


def test_control_reduces_flooding_at_the_demo_sensors(demo_eval):
    base = demo_eval.result("uncontrolled")
    rule = demo_eval.result("rule")
    pred = demo_eval.result("predictive")
    assert base.total_flooded_m3 > 1000.0
    assert rule.total_flooded_m3 < 0.5 * base.total_flooded_m3
    assert pred.total_flooded_m3 < rule.total_flooded_m3
    assert pred.flood_duration_min["J-market"] < base.flood_duration_min["J-market"]
    # The predictive station had both pumps running before the rule started any.
    first = {r.strategy: min(d.t for d in r.decisions) for r in (rule, pred)}
    assert first["predictive"] < first["rule"]
    table = demo_eval.table()
    assert "J-market" in table and "predictive" in table


def test_demo_runs_respect_minimum_times_and_start_caps(demo_eval):
    rules = {r.pump: r for r in demo_rules()}
    for result in (demo_eval.result("rule"), demo_eval.result("predictive")):
        for pump, rule in rules.items():
            mine = [d for d in result.decisions if d.pump == pump]
            for a, b in zip(mine, mine[1:], strict=False):
                gap = b.t - a.t
                assert gap >= (rule.min_on_s if a.setting == 1.0 else rule.min_off_s)
            starts = np.array([d.t for d in mine if d.setting == 1.0])
            for s in starts:
                assert np.sum((starts > s - 3600) & (starts <= s)) <= rule.max_starts_per_hour


# -- pystorms beta ----------------------------------------------------------------------------
#: ``scenario.performance()`` of beta stepped with no actions (the scenario's default
#: settings) by pystorms' own loop, pystorms 1.0 / pyswmm 2.2, measured outside this
#: code; ``evaluate_pystorms_beta()`` reproduces it to the last digit. A run is ~80,000
#: routing steps (25-30 s), so the tests run only the two controlled strategies.
BETA_UNCONTROLLED_GAL = 2_581_865.156


def test_beta_rules_come_from_the_network():
    from pystorms.networks import load_network

    rules = {r.pump: r for r in beta_rules(load_network("beta"))}
    assert rules["P0"].trigger == "J56"
    assert (rules["P0"].on_level, rules["P0"].off_level) == (1.0, 0.5)  # the model's float
    assert rules["R2"].on_level == pytest.approx(0.9 * 5.79)  # J64 max depth 5.79 ft
    assert rules["R2"].inhibit_level == pytest.approx(0.8 * 6.56)  # ST2 max depth 6.56 ft
    assert rules["P0"].inhibit_level == pytest.approx(0.9 * 6.41)  # J33 max depth 6.41 ft


def test_beta_rules_refuse_another_network(tmp_path):
    path = demo.write_demo_catchment(tmp_path / "demo.inp")
    with pytest.raises(SwmmEvaluationError, match="inp_path"):
        beta_rules(path)


@pytest.fixture(scope="module")
def beta_eval():
    return evaluate_pystorms_beta(strategies=("rule", "predictive"))


@pytest.mark.slow
def test_rule_and_predictive_beat_uncontrolled_on_beta(beta_eval):
    for strategy in ("rule", "predictive"):
        result = beta_eval.result(strategy)
        assert result.performance < 0.97 * BETA_UNCONTROLLED_GAL
        assert result.switches > 0
        assert {d.pump for d in result.decisions} == {"R2", "P0"}  # W0 stays open
    assert "predictive" in beta_eval.table()


@pytest.mark.slow
def test_beta_breakdown_adds_up_to_the_metric(beta_eval):
    for result in beta_eval.results:
        assert set(result.flooding_gal) == set(BETA_SENSITIVE_NODES)
        assert math.isclose(sum(result.flooding_gal.values()), result.performance, rel_tol=1e-9)
        # Most of what is left floods at J33, behind the tidal outfall.
        assert result.flooding_gal["J33"] > 0.4 * result.performance
