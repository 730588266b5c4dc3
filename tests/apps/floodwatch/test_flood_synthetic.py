"""The synthetic catchment against what it is built to be: reproducible storms with the
stated climate, and a depth response with the known physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cityos.apps.floodwatch.synthetic import (
    DEFAULT_START_S,
    MAX_INTENSITY_MM_PER_H,
    CatchmentConfigError,
    SiteParams,
    generate_storms,
    rain_forecast,
    site_response,
    storm_rain,
    storm_rate_per_day,
    synthetic_catchment,
    tipping_bucket,
)


@pytest.fixture(scope="module")
def catchment():
    return synthetic_catchment(seed=11, days=12, sites=2, storms_per_day=1.5)


def local_hour(t_s):
    return (np.asarray(t_s) / 3600.0 + 8.0) % 24.0


def test_same_seed_same_catchment_other_seed_other(catchment):
    again = synthetic_catchment(seed=11, days=12, sites=2, storms_per_day=1.5)
    for name in ("t_s", "rain_true_mm", "rain_mm", "depth_true_cm", "depth_cm"):
        np.testing.assert_array_equal(getattr(again, name), getattr(catchment, name))
    assert again.sites == catchment.sites and again.storms == catchment.storms
    other = synthetic_catchment(seed=12, days=12, sites=2, storms_per_day=1.5)
    assert other.storms != catchment.storms
    assert not np.array_equal(other.rain_mm, catchment.rain_mm)


def test_catchment_shapes_and_clock(catchment):
    n = 12 * 1440
    assert catchment.t_s.shape == (n,)
    assert catchment.rain_mm.shape == catchment.depth_cm.shape == (2, n)
    assert catchment.t_s[0] == DEFAULT_START_S + 60.0
    np.testing.assert_allclose(np.diff(catchment.t_s), 60.0)
    assert catchment.site_ids == ["site-00", "site-01"]


def test_storms_have_tropical_convective_sizes_and_dry_spells():
    storms = generate_storms(3, 200, storms_per_day=1.0, min_dry_min=60.0)
    assert len(storms) > 100
    durations = np.array([s.duration_min for s in storms])
    peaks = np.array([s.peak_mm_per_h for s in storms])
    assert durations.min() >= 20 and durations.max() <= 180
    assert 35 < np.median(durations) < 65
    assert peaks.min() >= 10 and peaks.max() <= 120
    starts = np.array([s.start_s for s in storms])
    ends = starts + 60 * durations
    assert np.all(starts[1:] - ends[:-1] >= 3600.0)


def test_afternoon_storms_as_often_as_the_rate_says():
    # expected share of storm starts 12:00-20:00 local, from the rate itself
    t = DEFAULT_START_S + np.arange(0, 365 * 86400, 60.0)
    rate = storm_rate_per_day(t, 1.0)
    hour = local_hour(t)
    expected = rate[(hour >= 12) & (hour < 20)].sum() / rate.sum()
    assert expected > 0.65  # the tendency is strong
    storms = generate_storms(1, 730, storms_per_day=1.0)
    starts = local_hour([s.start_s for s in storms])
    share = np.mean((starts >= 12) & (starts < 20))
    assert abs(share - expected) < 0.05  # binomial sd ~0.018 with ~650 storms
    assert np.mean(starts < 6) < 0.08


def test_storm_rate_daily_mean_and_afternoon_peak():
    # the diurnal factor is a von Mises density: mean 1, peak e^k / I0(k) at 16:00
    day = DEFAULT_START_S + np.arange(0, 86400, 60.0)
    rate = storm_rate_per_day(day, 2.0)
    seasonal = rate.mean() / 2.0
    peak = rate[np.argmin(np.abs(local_hour(day) - 16.0))]
    assert peak / rate.mean() == pytest.approx(math.exp(1.5) / np.i0(1.5), rel=1e-3)
    # mid-November is the wettest time of the year, mid-May the driest
    may = storm_rate_per_day(day + 182 * 86400, 2.0).mean() / 2.0
    assert seasonal > 1.3 and may < 0.7


def test_rain_intensities_and_storm_depth(catchment):
    intensity = catchment.rain_true_mm * 60.0  # mm/h at 1-min readings
    assert intensity.max() <= MAX_INTENSITY_MM_PER_H + 1e-9
    assert intensity.max() > 60.0
    wet_share = np.mean(catchment.rain_true_mm > 0)
    assert 0.01 < wet_share < 0.15  # dry spells dominate


def test_storm_rain_follows_the_storm_it_is_made_of():
    storms = generate_storms(5, 2, storms_per_day=3.0)
    t = storms[0].start_s + 60.0 * np.arange(1, 600)
    rain = storm_rain(t, storms[:1], 60.0, seed=1)
    inside = (t - 30.0 >= storms[0].start_s) & (
        t - 30.0 < storms[0].start_s + 60 * storms[0].duration_min)
    assert np.all(rain[~inside] == 0) and np.all(rain[inside] > 0)
    lagged = storm_rain(t, storms[:1], 60.0, seed=1, lag_min=5.0)
    np.testing.assert_allclose(lagged[5:inside.sum() + 5], rain[:inside.sum()])
    doubled = storm_rain(t, storms[:1], 60.0, seed=1, intensity_factor=2.0)
    capped = doubled >= MAX_INTENSITY_MM_PER_H / 60.0 - 1e-12
    np.testing.assert_allclose(doubled[~capped], 2 * rain[~capped])


def test_tipping_bucket_reports_whole_tips_and_loses_nothing_but_the_last():
    rain = np.random.default_rng(0).uniform(0, 0.5, 500)
    gauge = tipping_bucket(rain, 0.2)
    tips = gauge / 0.2
    np.testing.assert_allclose(tips, np.round(tips), atol=1e-9)
    assert 0 <= rain.sum() - gauge.sum() < 0.2
    assert np.all(np.cumsum(gauge) <= np.cumsum(rain) + 1e-9)


def test_water_balance_closes():
    rng = np.random.default_rng(4)
    rain = np.where(rng.random((2, 3000)) < 0.1, rng.uniform(0, 2, (2, 3000)), 0.0)
    sites = [SiteParams(n_reservoirs=3, k_min=7.0), SiteParams(n_reservoirs=1, k_min=20.0)]
    r = site_response(sites, rain, 60.0)
    storage_change = r.storage_mm[:, -1]  # everything starts empty
    pond_change = r.pond_mm[:, -1]
    # reservoirs: outflow + storage change = effective rain
    np.testing.assert_allclose(r.outflow_mm.sum(axis=1) + storage_change,
                               r.effective_rain_mm.sum(axis=1), rtol=1e-12)
    # whole site: drained + storage change + pond change = effective rain
    np.testing.assert_allclose(r.drained_mm.sum(axis=1) + storage_change + pond_change,
                               r.effective_rain_mm.sum(axis=1), rtol=1e-12)
    # and reading by reading
    np.testing.assert_allclose(
        np.diff(r.storage_mm + r.pond_mm, axis=1, prepend=0.0) + r.drained_mm,
        r.effective_rain_mm, atol=1e-12)
    # what does not run off stays in the initial loss or dries out: loss <= capacity
    assert np.all(r.loss_deficit_mm <= 3.0 + 1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_cascade_lags_the_runoff_by_n_times_k(n):
    # a burst in the first minute: the Nash cascade's mean lag is n k (+ half a reading)
    site = SiteParams(runoff_coefficient=1.0, initial_loss_mm=0.0, k_min=10.0,
                      n_reservoirs=n, drain_capacity_mm_per_h=0.0)
    rain = np.zeros(3000)
    rain[0] = 10.0
    outflow = site_response(site, rain, 60.0).outflow_mm
    minutes = np.arange(3000) + 0.5
    assert outflow.sum() == pytest.approx(10.0, rel=1e-9)
    assert (outflow * minutes).sum() / outflow.sum() == pytest.approx(10.0 * n + 0.5,
                                                                       rel=1e-6)
    if n == 1:  # a single linear reservoir recedes by exp(-dt/k) per reading
        np.testing.assert_allclose(outflow[2:50] / outflow[1:49], math.exp(-0.1))


def test_depth_stays_zero_until_the_drain_is_beaten_then_rises_at_the_excess_rate():
    site = SiteParams(runoff_coefficient=0.8, initial_loss_mm=2.0, k_min=5.0,
                      drain_capacity_mm_per_h=20.0, area_ratio=15.0)
    # once the initial loss is full, its drying (2 mm/h) goes on as a continuing loss
    light = np.full(600, 26.0 / 60)  # (26 - 2) x 0.8 = 19.2 mm/h: the drain copes
    assert np.all(site_response(site, light, 60.0).depth_cm == 0.0)
    heavy = np.full(600, 40.0 / 60)  # (40 - 2) x 0.8 = 30.4 mm/h against 20 mm/h
    depth = site_response(site, heavy, 60.0).depth_cm
    rise_cm_per_h = (depth[-1] - depth[-61])
    assert rise_cm_per_h == pytest.approx((0.8 * (40.0 - 2.0) - 20.0) * 15.0 / 10.0,
                                          rel=1e-6)
    # after the rain, once the reservoirs have emptied, the pond falls at the drain rate
    recession = site_response(site, np.concatenate([heavy[:240], np.zeros(300)]),
                              60.0).depth_cm
    peak = int(np.argmax(recession))
    assert recession[peak] > 50
    falling = -np.diff(recession[peak + 40:peak + 50]) * 60  # cm/h
    assert site.drain_cm_per_h == pytest.approx(30.0)
    np.testing.assert_allclose(falling, site.drain_cm_per_h, rtol=0.02)
    assert np.all(recession[-30:] == 0.0)  # dry road again


def test_initial_loss_swallows_the_first_millimetres():
    site = SiteParams(runoff_coefficient=0.5, initial_loss_mm=3.0, loss_recovery_mm_per_h=0)
    rain = np.zeros(100)
    rain[:5] = 0.5  # 2.5 mm: all held
    assert site_response(site, rain, 60.0).effective_rain_mm.sum() == 0.0
    rain[5:9] = 0.5  # 4.5 mm in all: 1.5 mm above the loss
    assert site_response(site, rain, 60.0).effective_rain_mm.sum() == pytest.approx(0.75)


def test_sensor_depth_is_truth_plus_noise_never_negative(catchment):
    error = catchment.depth_cm - catchment.depth_true_cm
    wet = catchment.depth_true_cm > 5.0
    assert wet.sum() > 100
    assert np.std(error[wet]) == pytest.approx(0.5, rel=0.15)
    assert catchment.depth_cm.min() >= 0.0
    # identifiable combinations exposed for calibration tests
    p = catchment.sites[0]
    assert p.gain_cm_per_mm == pytest.approx(p.runoff_coefficient * p.area_ratio / 10)


def test_rain_forecast_without_error_is_the_truth_ahead(catchment):
    truth = catchment.rain_true_mm[0]
    exact = rain_forecast(truth, 60.0, 30.0, amount_sd=0.0, timing_sd_min=0.0)
    assert exact.shape == (truth.size, 30)
    np.testing.assert_array_equal(exact[100], truth[101:131])
    np.testing.assert_array_equal(exact[-1], 0.0)  # beyond the record: dry


def test_rain_forecast_errors_are_unbiased_and_grow_with_lead(catchment):
    steady = np.ones(30000)  # 1 mm every reading: the ratio to the truth is the error
    scaled = rain_forecast(steady, 60.0, amount_sd=0.4, timing_sd_min=0.0, seed=2)[:-30]
    log_ratio = np.log(scaled)
    assert np.mean(scaled[:, -1]) == pytest.approx(1.0, abs=0.05)
    assert np.std(log_ratio[:, -1]) == pytest.approx(0.4, rel=0.1)
    assert np.std(log_ratio[:, 0]) == pytest.approx(0.4 / 30, rel=0.1)
    truth = catchment.rain_true_mm[0]
    exact = rain_forecast(truth, 60.0, amount_sd=0.0, timing_sd_min=0.0)
    shifted = rain_forecast(truth, 60.0, amount_sd=0.0, timing_sd_min=4.0, seed=2)
    assert not np.array_equal(shifted, exact)
    # a timing error moves rain, it does not make it: every forecast value is a true one
    assert np.isin(shifted, np.concatenate([truth, [0.0]])).all()
    np.testing.assert_array_equal(catchment.rain_forecast(0), catchment.rain_forecast(0))


@pytest.mark.parametrize("field, value", [("runoff_coefficient", 1.5), ("k_min", 0.0),
                                          ("initial_loss_mm", -1.0), ("area_ratio", math.nan),
                                          ("n_reservoirs", 0)])
def test_impossible_site_is_refused_by_name(field, value):
    with pytest.raises(CatchmentConfigError, match=field):
        SiteParams(**{field: value})


def test_bad_settings_are_refused_by_name():
    with pytest.raises(CatchmentConfigError, match="days"):
        generate_storms(0, 0)
    with pytest.raises(CatchmentConfigError, match="horizon_min"):
        rain_forecast(np.zeros(10), 60.0, horizon_min=7.5)
    with pytest.raises(CatchmentConfigError, match="rain_mm"):
        site_response([SiteParams()], np.zeros((2, 10)))
    with pytest.raises(CatchmentConfigError, match="sites"):
        synthetic_catchment(days=1, sites=0)
