"""The vectorised per-point fit against known truth: parameters, standard errors
(coverage over many noise realisations), coherence, trend change, LOS geometry,
re-referencing, and the store fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cityos.apps.subsidence.fit import (
    decimal_years,
    decompose,
    design_matrix,
    detect_trend_change,
    fit_series,
    fit_store,
    los_to_vertical,
    los_unit_vector,
    project_to_los,
    rereference,
    temporal_coherence,
)

DATES = np.datetime64("2019-01-06") + np.arange(100) * np.timedelta64(12, "D")


def _truth(k, rng):
    years = decimal_years(DATES)
    t = years - years.mean()
    v = rng.uniform(-80, 10, k)
    a = rng.uniform(-6, 6, k)
    s, c = rng.uniform(-4, 4, k), rng.uniform(-4, 4, k)
    d = (5 + v[:, None] * t + 0.5 * a[:, None] * t ** 2 + s[:, None] * np.sin(2 * np.pi * years)
         + c[:, None] * np.cos(2 * np.pi * years))
    return d, v, a, np.hypot(s, c), np.arctan2(c, s)


def test_noise_free_series_give_back_every_parameter():
    rng = np.random.default_rng(1)
    d, v, a, amp, phase = _truth(50, rng)
    out = fit_series(DATES, d)
    np.testing.assert_allclose(out["velocity_mm_yr"], v, atol=1e-9)
    np.testing.assert_allclose(out["acceleration_mm_yr2"], a, atol=1e-8)
    np.testing.assert_allclose(out["seasonal_amplitude_mm"], amp, atol=1e-9)
    np.testing.assert_allclose(out["seasonal_phase_rad"], phase, atol=1e-8)
    np.testing.assert_allclose(out["offset_mm"], 5 + 0 * v, atol=1e-9)
    assert np.all(out["rms_mm"] < 1e-9) and np.all(out["coherence"] > 1 - 1e-12)
    # trend change is tested against a linear trend: steady acceleration is a change
    steady = np.abs(a) > 1.0
    assert out["trend_change"][steady].all()
    linear = fit_series(DATES, d - 0.5 * a[:, None] * (decimal_years(DATES) - decimal_years(
        DATES).mean())[None, :] ** 2)
    assert not linear["trend_change"].any()


def test_standard_errors_cover_the_truth_at_the_nominal_rate():
    """4,000 realisations, sigma 3 mm: 95 % intervals hold the true velocity and
    acceleration 95 % of the time, and se matches the scatter of the estimates."""
    rng = np.random.default_rng(2)
    k, sigma = 4000, 3.0
    d, v, a, _, _ = _truth(k, rng)
    out = fit_series(DATES, d + rng.normal(0, sigma, d.shape), trend_change=False)
    z = stats.norm.ppf(0.975)
    for est, se, true in ((out["velocity_mm_yr"], out["velocity_se"], v),
                          (out["acceleration_mm_yr2"], out["acceleration_se"], a)):
        covered = np.mean(np.abs(est - true) <= z * se)
        assert 0.935 <= covered <= 0.965, covered
        assert np.std(est - true) == pytest.approx(np.mean(se), rel=0.05)
    # and the analytical se of a velocity with sigma known: sigma / sqrt(sum (t - tbar)^2)
    years = decimal_years(DATES)
    expected = sigma * np.sqrt(design_matrix(DATES).cov_unit[1, 1])
    assert np.mean(out["velocity_se"]) == pytest.approx(expected, rel=0.03)
    assert expected < sigma / np.sqrt(np.sum((years - years.mean()) ** 2)) * 1.01
    assert np.mean(out["rms_mm"]) == pytest.approx(sigma * np.sqrt(94 / 100), rel=0.02)


def test_temporal_coherence_of_gaussian_residuals():
    """|E exp(j phi)| = exp(-s^2 / 2) for phi ~ N(0, s^2)."""
    rng = np.random.default_rng(3)
    lam_mm = 55.46576
    sigma_mm = 3.0
    r = rng.normal(0, sigma_mm, (200, 20_000))
    phase_sigma = 4 * np.pi / lam_mm * sigma_mm
    assert np.mean(temporal_coherence(r)) == pytest.approx(np.exp(-phase_sigma ** 2 / 2),
                                                           abs=0.01)
    # a jump of exactly lambda/2 (one phase cycle) leaves it at 1
    jump = np.where(np.arange(50) > 20, lam_mm / 2, 0.0)[None, :]
    assert temporal_coherence(jump)[0] == pytest.approx(1.0)
    assert temporal_coherence(jump / 2)[0] < 0.5


def test_trend_change_found_at_the_right_epoch_and_not_on_linear_series():
    rng = np.random.default_rng(4)
    years = decimal_years(DATES)
    k = 600
    onset = 55
    hinge = np.maximum(0, years - years[onset])
    series = -10 * (years - years[0]) + 1.5 * np.sin(2 * np.pi * years)
    broken = series[None, :] - 25 * hinge[None, :] + rng.normal(0, 2.0, (k, 100))
    changed, when = detect_trend_change(DATES, broken)
    assert changed.mean() > 0.99
    offsets = (when[changed] - DATES[onset]).astype(int)          # days
    # unbiased, and within two epochs (24 days) for 95 % of the series
    assert np.median(offsets) == 0 and np.mean(np.abs(offsets) <= 24) > 0.95
    out = fit_series(DATES, broken)
    assert np.median(out["velocity_before_mm_yr"]) == pytest.approx(-10, abs=0.3)
    assert np.median(out["velocity_after_mm_yr"]) == pytest.approx(-35, abs=0.3)

    linear = series[None, :] + rng.normal(0, 2.0, (4000, 100))
    false_alarms, when = detect_trend_change(DATES, linear)
    assert false_alarms.mean() < 0.01
    assert np.all(np.isnat(when[~false_alarms]))


def test_mintpy_clock_and_uniform_clock():
    dates = np.array(["2019-12-31", "2020-01-01", "2020-12-31", "2021-01-01"],
                     dtype="datetime64[D]")
    dy = decimal_years(dates, "decimal_year")
    np.testing.assert_allclose(dy, [2019 + 364 / 365.25, 2020.0, 2020 + 365 / 365.25, 2021.0])
    np.testing.assert_allclose(np.diff(decimal_years(dates)), np.array([1, 365, 1]) / 365.25)
    with pytest.raises(ValueError, match="time_axis"):
        decimal_years(dates, "gps")


def test_los_geometry_decomposition_inverts_the_forward_projection():
    rng = np.random.default_rng(6)
    n = 1000
    east, up = rng.normal(0, 20, n), rng.normal(-30, 30, n)
    inc_a, inc_d = rng.uniform(30, 45, n), rng.uniform(30, 45, n)
    asc = project_to_los(east, 0.0, up, inc_a, -10.5)
    desc = project_to_los(east, 0.0, up, inc_d, -169.5)
    got_up, got_east = decompose(asc, desc, {"asc_incidence_deg": inc_a,
                                             "asc_heading_deg": -10.5,
                                             "desc_incidence_deg": inc_d,
                                             "desc_heading_deg": -169.5})
    np.testing.assert_allclose(got_up, up, atol=1e-9)
    np.testing.assert_allclose(got_east, east, atol=1e-9)
    # MintPy's sign convention: ascending (looking east) sees eastward motion as away
    e, n_, u = los_unit_vector(40.0, -12.0)
    assert e < 0 and u == pytest.approx(np.cos(np.deg2rad(40)))
    assert np.hypot(np.hypot(e, n_), u) == pytest.approx(1.0)
    # pure vertical motion: LOS / cos(inc) gives it back
    np.testing.assert_allclose(los_to_vertical(project_to_los(0, 0, up, inc_a, -10.5), inc_a),
                               up, atol=1e-9)
    assert np.isnan(los_to_vertical(np.array([1.0]), np.array([np.nan]))[0])


def test_rereference_to_a_stable_area_removes_its_common_signal():
    rng = np.random.default_rng(7)
    common = np.cumsum(rng.normal(0, 3, 100))          # the reference area's own motion
    truth = rng.normal(0, 10, (30, 1)) * np.linspace(0, 1, 100)[None, :]
    truth[:5] = 0.0                                    # points 0-4: stable ground
    observed = truth + common[None, :]
    np.testing.assert_allclose(rereference(observed, np.arange(5)), truth, atol=1e-9)
    mask = np.zeros(30, bool)
    mask[:5] = True
    np.testing.assert_allclose(rereference(observed, mask), truth, atol=1e-9)
    np.testing.assert_allclose(rereference(observed, common), truth, atol=1e-9)
    with pytest.raises(ValueError, match="empty reference"):
        rereference(observed, np.array([], dtype=int))


def test_fit_store_writes_columns_and_refers_to_the_reference(tmp_path):
    from cityos.apps.subsidence.points import PointStore
    from cityos.apps.subsidence.products import read_mintpy
    from cityos.apps.subsidence.synthetic import mintpy_attributes, write_mintpy_timeseries

    rng = np.random.default_rng(8)
    rows, cols = 12, 10
    years = decimal_years(DATES)
    rate = np.linspace(-50, 0, rows * cols).reshape(rows, cols)
    rate[0, 0] = 0.0
    drift = 4.0 * (years - years[0])                   # the whole frame drifts
    cube = (rate[None] * (years - years[0])[:, None, None] + drift[:, None, None]
            + rng.normal(0, 0.5, (100, rows, cols)))
    inc = 35.0
    attrs = mintpy_attributes(rows, cols, DATES, x_first=106.8, y_first=-6.2, x_step=0.001,
                              y_step=-0.001)
    write_mintpy_timeseries(tmp_path / "timeseries.h5", DATES, (cube / 1000).astype(np.float32),
                            attrs)
    from cityos.apps.subsidence.synthetic import write_mintpy_geometry
    write_mintpy_geometry(tmp_path / "geometryGeo.h5", attrs, height=np.zeros((rows, cols)),
                          incidence_deg=np.full((rows, cols), inc))
    store = PointStore.create(tmp_path / "s", read_mintpy(tmp_path / "timeseries.h5"))
    ref_row = int(np.flatnonzero(store.ids == 0)[0])
    fit_store(store, chunk=37, workers=2, reference_rows=[ref_row])
    got = PointStore.open(tmp_path / "s").fitted()
    true = rate.ravel()[store.ids]
    np.testing.assert_allclose(got["velocity_mm_yr"], true, atol=0.5)
    np.testing.assert_allclose(got["velocity_vertical_mm_yr"],
                               true / np.cos(np.deg2rad(inc)), atol=0.7)
    assert got["velocity_mm_yr"][ref_row] == pytest.approx(0.0, abs=1e-9)
    assert set(got) >= {"velocity_se", "acceleration_mm_yr2", "seasonal_amplitude_mm",
                        "rms_mm", "coherence", "trend_change", "break_date"}
