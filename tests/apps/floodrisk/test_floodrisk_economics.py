"""EAD, appraisal and premiums against closed-form answers."""

from __future__ import annotations

import numpy as np
import pytest

from cityos.apps.floodrisk.economics import (
    annuity_factor,
    appraise,
    expected_annual_damage,
    gross_premium,
    loss_exceedance,
)


def test_ead_of_damage_linear_in_p_is_exact():
    # D(p) = 1000 (0.5 - p): zero at T = 2; sampled at T = 2, 5, 10, 25, 50, 100.
    periods = [100, 2, 25, 5, 50, 10]  # any order
    damage = [1000 * (0.5 - 1 / t) for t in periods]
    # int_{0.01}^{0.5} 1000 (0.5 - p) dp = 500 * 0.49^2 = 120.05
    assert expected_annual_damage(periods, damage, tail="truncate") == pytest.approx(120.05)
    # holding D(100) = 490 from p = 0.01 to 0 adds 4.9
    assert expected_annual_damage(periods, damage) == pytest.approx(124.95)


def test_ead_constant_damage_is_damage_times_exceedance_of_smallest_event():
    # D = 10 for every event from T = 2 up, held to p = 0: EAD = 10 * 0.5
    assert expected_annual_damage([2, 10, 100], [10, 10, 10]) == pytest.approx(5.0)


def test_ead_protection_standard():
    # step at T = 20: D(p = 0.05) interpolated between (0.1, 50) and (0.01, 100) = 77.78
    value = expected_annual_damage([2, 10, 100], [0, 50, 100], protection_standard_yr=20)
    d20 = 50 + 50 * (0.1 - 0.05) / 0.09
    assert value == pytest.approx((100 + d20) / 2 * 0.04 + 100 * 0.01)
    # defended beyond the rarest event: only the held tail above T = 200 remains
    assert expected_annual_damage([2, 10, 100], [0, 50, 100],
                                  protection_standard_yr=200) == pytest.approx(100 / 200)


def test_ead_rejects_bad_input():
    with pytest.raises(ValueError, match="above 1 year"):
        expected_annual_damage([1, 10], [0, 1])
    with pytest.raises(ValueError, match="not negative"):
        expected_annual_damage([2, 10], [0, -1])
    with pytest.raises(ValueError, match="tail"):
        expected_annual_damage([2, 10], [0, 1], tail="extrapolate")


def test_loss_exceedance_is_rarest_first():
    p, d = loss_exceedance([2, 100, 10], [1, 9, 5])
    np.testing.assert_allclose(p, [0.01, 0.1, 0.5])
    np.testing.assert_allclose(d, [9, 5, 1])


def test_annuity_factor():
    assert annuity_factor(0.0, 30) == 30
    assert annuity_factor(0.05, 2) == pytest.approx(1 / 1.05 + 1 / 1.05 ** 2)
    assert annuity_factor(0.1, 1000) == pytest.approx(10.0)


def test_appraise_npv_bcr_premium():
    baseline = {2: 0.0, 10: 1000.0, 100: 5000.0}
    package = {2: 0.0, 10: 0.0, 100: 2000.0}
    result = appraise("full", baseline, package, capital_cost=300.0, annual_cost=10.0,
                      discount_rate=0.05, lifetime_years=2, loading=0.25)
    ead_base = (0 + 1000) / 2 * 0.4 + (1000 + 5000) / 2 * 0.09 + 5000 * 0.01  # 520
    ead_pkg = (0 + 0) / 2 * 0.4 + (0 + 2000) / 2 * 0.09 + 2000 * 0.01  # 110
    assert result.ead_baseline == pytest.approx(ead_base)
    assert result.ead == pytest.approx(ead_pkg)
    factor = 1 / 1.05 + 1 / 1.05 ** 2
    assert result.pv_benefits == pytest.approx((ead_base - ead_pkg) * factor)
    assert result.pv_costs == pytest.approx(300 + 10 * factor)
    assert result.npv == pytest.approx(result.pv_benefits - result.pv_costs)
    assert result.bcr == pytest.approx(result.pv_benefits / result.pv_costs)
    assert result.damage_avoided == {2.0: 0.0, 10.0: 1000.0, 100.0: 3000.0}
    assert result.pure_premium == pytest.approx(ead_pkg)
    assert result.gross_premium == pytest.approx(ead_pkg * 1.25)
    assert result.to_dict()["damage_avoided"]["100"] == 3000.0


def test_appraise_checks():
    with pytest.raises(ValueError, match="differ"):
        appraise("p", {2: 1.0, 10: 2.0}, {2: 1.0}, capital_cost=1, annual_cost=0,
                 discount_rate=0.05, lifetime_years=10)
    with pytest.raises(ValueError, match="loading"):
        gross_premium(10.0, -0.1)
    free = appraise("p", {2: 1.0, 10: 2.0}, {2: 0.0, 10: 0.0}, capital_cost=0,
                    annual_cost=0, discount_rate=0.05, lifetime_years=10)
    assert free.bcr == float("inf") and free.to_dict()["bcr"] is None
