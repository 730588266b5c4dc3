"""Flood-depth nowcasts on the synthetic catchment, whose true response is known: the
conceptual model's physics and calibration, the nowcasts' skill on held-out storms
against persistence, the many-site path, the evaluation's scores, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cityos.apps.floodwatch.nowcast import (
    HORIZONS_MIN,
    RAIN_DECAY_MIN,
    BoostingNowcaster,
    ConceptualNowcaster,
    NowcastInputError,
    PersistenceNowcaster,
    ReservoirFleet,
    ReservoirParams,
    SiteNowcaster,
    assumed_rain,
    calibrate_reservoir,
    check_readings,
    lagged_features,
    nowcast_sites,
    simulate_reservoir,
)
from cityos.apps.floodwatch.nowcast_eval import (
    crossings,
    evaluate,
    run_synthetic_evaluation,
    warning_lead_times,
)
from cityos.apps.floodwatch.synthetic import SiteParams, synthetic_catchment

FAST_TREES = {"max_iter": 80, "n_threads": 1}


def true_params(site: SiteParams) -> ReservoirParams:
    return ReservoirParams(site.initial_loss_mm, site.k_min, site.gain_cm_per_mm,
                           site.drain_cm_per_h, site.n_reservoirs,
                           site.loss_recovery_mm_per_h)


@pytest.fixture(scope="module")
def clean():
    """Noise-free sensors and an exact gauge: the model structure is the truth's."""
    sites = [SiteParams(runoff_coefficient=0.85, initial_loss_mm=2.5, k_min=6.0,
                        n_reservoirs=n, drain_capacity_mm_per_h=10.0, area_ratio=18.0,
                        noise_cm=0.0, resolution_cm=0.0) for n in (1, 2, 3)]
    return synthetic_catchment(seed=5, days=10, site_params=sites, gauge_tip_mm=0.0,
                               storms_per_day=1.2)


@pytest.fixture(scope="module")
def real():
    """One flood-prone site with a 0.2 mm tipping bucket and a 0.5 cm-noise sensor,
    fitted on its first 12 days and scored on the next 12."""
    site = SiteParams(runoff_coefficient=0.9, initial_loss_mm=3.0, k_min=5.0,
                      drain_capacity_mm_per_h=12.0, area_ratio=15.0)
    catchment = synthetic_catchment(seed=2, days=24, site_params=[site], storms_per_day=1.0)
    forecast = catchment.rain_forecast(0)
    half = catchment.t_s.size // 2
    nowcaster = SiteNowcaster(refit=False, boosting_options=FAST_TREES).fit(
        catchment.t_s[:half], catchment.rain_mm[0, :half], catchment.depth_cm[0, :half],
        forecast[:half])
    args = (catchment.t_s, catchment.rain_mm[0], catchment.depth_cm[0])
    start = float(catchment.t_s[half])
    return {"catchment": catchment, "forecast": forecast, "nowcaster": nowcaster,
            "with": evaluate(nowcaster, *args, forecast, start_s=start),
            "without": evaluate(nowcaster, *args, start_s=start)}


# ============================================================ the physics
def test_fast_simulation_matches_the_reference_physics(clean):
    for i, site in enumerate(clean.sites):
        depth = simulate_reservoir(clean.rain_mm[i], true_params(site), clean.dt_s)
        np.testing.assert_allclose(depth, clean.depth_true_cm[i], atol=1e-9)
    assert clean.depth_true_cm.max() > 20  # the record floods


def test_a_run_goes_on_from_its_saved_state(clean):
    params = true_params(clean.sites[2])
    rain = clean.rain_mm[2]
    whole = simulate_reservoir(rain, params, 60.0)
    cut = int(np.argmax(whole))  # mid-flood, reservoirs full
    first = simulate_reservoir(rain[:cut], params, 60.0, states=True)
    rest = simulate_reservoir(rain[cut:], params, 60.0,
                              loss_deficit_mm=first.loss_deficit_mm[-1],
                              stores_cm=first.stores_cm[:, -1], pond_cm=first.depth_cm[-1])
    np.testing.assert_allclose(rest, whole[cut:], atol=1e-9)
    # water balance in depth units: inflow to the sag = effective rain - storage gain
    np.testing.assert_allclose(first.inflow_cm.sum() + first.stores_cm[:, -1].sum(),
                               first.effective_rain_cm.sum(), rtol=1e-12)


def test_calibration_recovers_the_true_parameters_on_noise_free_data(clean):
    site = clean.sites[1]
    fit = calibrate_reservoir(clean.t_s, clean.rain_mm[1], clean.depth_cm[1])
    assert fit.rmse_cm < 1e-6
    assert fit.params.initial_loss_mm == pytest.approx(site.initial_loss_mm, rel=1e-3)
    assert fit.params.k_min == pytest.approx(site.k_min, rel=1e-3)
    assert fit.params.gain_cm_per_mm == pytest.approx(site.gain_cm_per_mm, rel=1e-3)
    assert fit.params.drain_cm_per_h == pytest.approx(site.drain_cm_per_h, rel=1e-3)


def test_calibration_from_a_noisy_sensor_and_tipping_gauge_is_close(real):
    catchment = real["catchment"]
    site = catchment.sites[0]
    fit = calibrate_reservoir(catchment.t_s, catchment.rain_mm[0], catchment.depth_cm[0])
    assert abs(fit.params.initial_loss_mm - site.initial_loss_mm) < 1.0
    assert fit.params.k_min == pytest.approx(site.k_min, rel=0.1)
    assert fit.params.gain_cm_per_mm == pytest.approx(site.gain_cm_per_mm, rel=0.1)
    assert fit.params.drain_cm_per_h == pytest.approx(site.drain_cm_per_h, rel=0.1)
    assert fit.rmse_cm < 1.0  # about the sensor noise


def test_no_ponding_nothing_to_calibrate():
    t = 60.0 * np.arange(3000)
    rain = np.where(np.arange(3000) % 500 < 30, 0.3, 0.0)
    fit = calibrate_reservoir(t, rain, np.zeros(3000))
    assert fit.params is None and "never reaches" in fit.note


def test_true_model_with_a_perfect_forecast_nowcasts_the_truth(clean):
    from cityos.apps.floodwatch.synthetic import rain_forecast

    site = clean.sites[2]
    perfect = rain_forecast(clean.rain_true_mm[2], 60.0, amount_sd=0.0, timing_sd_min=0.0)
    model = ConceptualNowcaster(params=true_params(site))
    predicted = model.predict_series(clean.t_s, clean.rain_mm[2], clean.depth_cm[2], perfect)
    truth = clean.depth_true_cm[2]
    for k, h in enumerate((10, 20, 30)):
        np.testing.assert_allclose(predicted[:-h, k], truth[h:], atol=1e-8)


def test_without_a_forecast_the_rain_decays_from_its_recent_rate():
    rain = np.full(30, 0.5)  # 30 mm/h for half an hour
    ahead = assumed_rain(rain, 60.0, 30)
    assert ahead.shape == (30, 30)
    tau = RAIN_DECAY_MIN
    # the integral of 0.5 mm/min x exp(-t / tau) over the next 30 min
    assert ahead[-1].sum() == pytest.approx(0.5 * tau * (1 - math.exp(-30 / tau)))
    assert ahead[-1, 0] == pytest.approx(0.5 * tau * (1 - math.exp(-1 / tau)))
    assert ahead[4].sum() == pytest.approx(ahead[-1].sum() / 2)  # 5 of the last 10 min wet


def test_fleet_nowcasts_equal_the_single_site_ones(clean):
    params = [true_params(s) for s in clean.sites]
    end = int(np.argmax(clean.depth_cm[1])) - 15  # while the water rises
    window = slice(end - 240, end + 1)
    rain, depth = clean.rain_mm[:, window], clean.depth_cm[:, window]
    many = nowcast_sites(params, rain, depth, 60.0)
    for i, p in enumerate(params):
        one = ConceptualNowcaster(params=p).predict_series(clean.t_s[window], rain[i],
                                                           depth[i])[-1]
        np.testing.assert_allclose(many[i], one, atol=1e-9)
    assert many[1, -1] > depth[1, -1] + 1  # it sees the rise coming
    forecast = np.zeros((3, 30))
    dry = nowcast_sites(params, rain, depth, 60.0, rain_forecast_mm=forecast)
    assert np.all(dry[:, -1] <= many[:, -1] + 1e-12)  # no rain ahead: never deeper
    # a missing depth reading (NaN) keeps the model's own pond
    fleets = ReservoirFleet(params, 60.0), ReservoirFleet(params, 60.0)
    for fleet in fleets:
        for i in range(rain.shape[1] - 1):
            fleet.update(rain[:, i], depth[:, i])
    fleets[0].update(rain[:, -1], np.array([np.nan, depth[1, -1], np.nan]))
    fleets[1].update(rain[:, -1])
    assert fleets[0].pond_cm[1] == depth[1, -1]
    np.testing.assert_array_equal(fleets[0].pond_cm[[0, 2]], fleets[1].pond_cm[[0, 2]])


def test_lagged_features_by_hand():
    rain = np.array([0, 0, 1, 1, 0, 0, 0, 2, 0, 0], dtype=float)
    depth = np.array([0, 0, 0, 1, 3, 4, 4, 3, 5, 6], dtype=float)
    features, names = lagged_features(rain, depth, 60.0)
    col = {name: features[:, i] for i, name in enumerate(names)}
    np.testing.assert_array_equal(col["rain_5min_mm"], [0, 0, 1, 2, 2, 2, 2, 3, 2, 2])
    np.testing.assert_array_equal(col["depth_change_1min_cm"], [0, 0, 0, 1, 2, 1, 0, -1, 2, 1])
    np.testing.assert_array_equal(col["depth_change_5min_cm"], [0, 0, 0, 1, 3, 4, 4, 3, 4, 3])
    np.testing.assert_array_equal(col["min_since_rain"], [240, 240, 0, 0, 1, 2, 3, 0, 1, 2])
    # the 2 mm at minute 7 is the same storm (less than 30 min dry)
    np.testing.assert_array_equal(col["min_since_storm_start"],
                                  [240, 240, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(col["depth_max_60min_cm"], [0, 0, 0, 1, 3, 4, 4, 4, 5, 6])
    forecast = np.ones((10, 30)) * 0.1
    with_forecast, names = lagged_features(rain, depth, 60.0, forecast)
    assert with_forecast[0, names.index("forecast_rain_30min_mm")] == pytest.approx(3.0)


# ============================================================== the skill
def test_the_chosen_model_beats_persistence_by_far_at_30_min(real):
    scores = real["with"].scores
    model, base = scores["chosen"].rmse_wet_cm, scores["persistence"].rmse_wet_cm
    assert scores["chosen"].readings_wet[-1] > 1000
    assert model[-1] < 0.4 * base[-1]
    assert all(m < b for m, b in zip(model, base, strict=True))
    assert scores["chosen"].rmse_cm[-1] < 0.5 * scores["persistence"].rmse_cm[-1]


def test_without_a_forecast_it_still_beats_persistence(real):
    scores = real["without"].scores
    assert scores["chosen"].rmse_wet_cm[-1] < 0.7 * scores["persistence"].rmse_wet_cm[-1]


def test_the_data_driven_model_learns_something(real):
    scores = real["with"].scores
    assert scores["boosting"].rmse_wet_cm[-1] < 0.7 * scores["persistence"].rmse_wet_cm[-1]


def test_exceedance_detected_more_often_and_warned_ahead(real):
    model, base = real["with"].scores["chosen"], real["with"].scores["persistence"]
    assert model.hit_rate[-1] > base.hit_rate[-1] + 0.05
    assert model.false_alarm_ratio[-1] < 0.2
    assert model.events >= 3
    assert model.events_warned >= model.events - 1
    assert model.mean_lead_min > 10.0
    assert base.events_warned == 0 and math.isnan(base.mean_lead_min)


def test_the_choice_follows_the_validation_skill(real):
    nowcaster = real["nowcaster"]
    skill = {name: s.rmse_wet_cm[-1] for name, s in nowcaster.skill.items()}
    assert set(skill) == {"conceptual", "boosting", "persistence"}
    assert nowcaster.chosen == min(skill, key=skill.get) == "conceptual"
    assert f"{skill['conceptual']:.2f}" in nowcaster.reason
    assert f"{skill['persistence']:.2f}" in nowcaster.reason


def test_a_road_that_never_floods_keeps_persistence():
    t = 60.0 * np.arange(6000)
    rain = np.where(np.arange(6000) % 700 < 40, 0.4, 0.0)
    nowcaster = SiteNowcaster(boosting_options=FAST_TREES).fit(t, rain, np.zeros(6000))
    assert nowcaster.chosen == "persistence"
    assert "conceptual" not in nowcaster.models
    assert "not fitted: conceptual (depth never reaches" in nowcaster.reason


def test_too_short_a_history_falls_back_to_persistence_and_says_why():
    t = 60.0 * np.arange(40)
    nowcaster = SiteNowcaster(boosting_options=FAST_TREES).fit(t, np.full(40, 0.3),
                                                               np.zeros(40))
    assert nowcaster.chosen == "persistence"
    assert "boosting (depth_cm: too short a history" in nowcaster.reason
    assert nowcaster.predict(t, np.full(40, 0.3), np.zeros(40)).depth_cm == [0.0, 0.0, 0.0]


def test_predict_after_the_latest_reading(real):
    catchment, nowcaster = real["catchment"], real["nowcaster"]
    half = catchment.t_s.size // 2
    rising = half + int(np.argmax(catchment.depth_cm[0, half:] >= 20.0)) - 10
    end = rising - int(np.argmax(catchment.depth_cm[0, rising::-1] < 1.0)) + 5  # water rising
    window = slice(end - 240, end + 1)
    row = real["forecast"][end]
    result = nowcaster.predict(catchment.t_s[window], catchment.rain_mm[0, window],
                               catchment.depth_cm[0, window], row)
    assert result.model == "conceptual" and result.horizons_min == HORIZONS_MIN
    assert result.valid_s == [catchment.t_s[end] + 60 * h for h in HORIZONS_MIN]
    forecast = np.zeros((241, 30))
    forecast[-1] = row
    series = nowcaster.predict_series(catchment.t_s[window], catchment.rain_mm[0, window],
                                      catchment.depth_cm[0, window], forecast)
    np.testing.assert_allclose(result.depth_cm, series[-1])
    assert set(result.by_model) == {"conceptual", "boosting", "persistence"}
    truth = catchment.depth_true_cm[0, end + 30]
    assert abs(result.depth_cm[-1] - truth) < abs(catchment.depth_cm[0, end] - truth)


# ======================================================== the evaluation
def test_persistence_scores_by_hand_on_a_rising_road():
    t = 60.0 * np.arange(200)
    depth = 0.5 * np.arange(200)  # rises 0.5 cm a minute: persistence is 5 cm short
    rain = np.full(200, 0.5)      # at 10 min, 10 cm at 20, 15 cm at 30
    nowcaster = SiteNowcaster()
    nowcaster.models = {"persistence": PersistenceNowcaster()}
    nowcaster.chosen = "persistence"
    result = evaluate(nowcaster, t, rain, depth, threshold_cm=20.0)
    scores = result.scores["persistence"]
    np.testing.assert_allclose(scores.rmse_cm, [5.0, 10.0, 15.0])
    np.testing.assert_allclose(scores.rmse_wet_cm, [5.0, 10.0, 15.0])
    assert scores.readings == [190, 180, 170]
    # depth >= 20 cm from reading 40: persistence misses the first h readings of it
    assert scores.hits == [150, 140, 130] and scores.misses == [10, 20, 30]
    assert scores.false_alarms == [0, 0, 0]
    assert scores.events == 1 and scores.events_warned == 0


def test_crossings_and_lead_times_by_hand():
    depth = np.array([0, 5, 21, 22, 10, 25, 0, 0, 0, 0, 0, 0, 30, 0], dtype=float)
    assert crossings(depth, 20.0, merge_gap=3).tolist() == [2, 12]  # 21..25 is one event
    assert crossings(depth, 20.0, merge_gap=1).tolist() == [2, 5, 12]
    warning = np.array([0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 0], dtype=bool)
    # crossing 2: warned at 1 only -> 1 reading; crossing 12: warned 10-11 -> 2 readings
    assert warning_lead_times(warning, np.array([2, 12]), max_lead=30).tolist() == [1, 2]
    assert warning_lead_times(warning, np.array([12]), max_lead=1).tolist() == [1]
    assert warning_lead_times(np.zeros(14, bool), np.array([2, 12]), 30).tolist() == [0, 0]


def test_the_synthetic_evaluation_reports_a_table():
    report = run_synthetic_evaluation(seed=1, days=8, sites=1, storms_per_day=1.5,
                                      refit=False, boosting_options=FAST_TREES)
    text = report.table()
    for row in ("RMSE (cm)", "hit rate", "false-alarm ratio", "mean lead (min)",
                "persistence", "chosen", "site-00"):
        assert row in text
    data = report.to_dict()
    json.dumps(data)
    assert data["pooled"]["persistence"]["rmse_cm"][0] > 0


# ============================================================= bad input
@pytest.mark.parametrize("change, field", [
    (lambda t, r, d: (t[::-1], r, d), "t_s"),
    (lambda t, r, d: (np.r_[t[:5], t[4:-1]], r, d), "t_s"),
    (lambda t, r, d: (np.r_[t[:5], t[5:] + 30], r, d), "t_s"),
    (lambda t, r, d: (t, r[:-1], d), "rain_mm"),
    (lambda t, r, d: (t, r, np.r_[d[:3], np.nan, d[4:]]), "depth_cm"),
    (lambda t, r, d: (t, np.r_[r[:3], -1.0, r[4:]], d), "rain_mm"),
    (lambda t, r, d: (t, r, d[:, None]), "depth_cm"),
])
def test_bad_readings_are_refused_by_name(change, field):
    t, rain, depth = 60.0 * np.arange(100), np.zeros(100), np.zeros(100)
    with pytest.raises(NowcastInputError, match=field):
        check_readings(*change(t, rain, depth))
    with pytest.raises(NowcastInputError, match=field):
        PersistenceNowcaster().predict_series(*change(t, rain, depth))


def test_bad_settings_are_refused_by_name(clean):
    t, rain, depth = clean.t_s[:500], clean.rain_mm[0, :500], clean.depth_cm[0, :500]
    bad_forecast = np.zeros((500, 30))
    bad_forecast[7, 3] = np.nan
    with pytest.raises(NowcastInputError, match="rain_forecast_mm"):
        ConceptualNowcaster(params=true_params(clean.sites[0])).predict_series(
            t, rain, depth, bad_forecast)
    with pytest.raises(NowcastInputError, match="rain_forecast_mm"):
        ConceptualNowcaster(params=true_params(clean.sites[0])).predict_series(
            t, rain, depth, np.zeros((500, 20)))
    with pytest.raises(NowcastInputError, match="horizons_min"):
        ConceptualNowcaster(horizons_min=(10, 20, 30),
                            params=true_params(clean.sites[0])).predict_series(
            t[::7], rain[::7], depth[::7])
    with pytest.raises(NowcastInputError, match="k_min"):
        ReservoirParams(2.0, 0.0, 1.0, 10.0)
    with pytest.raises(NowcastInputError, match="candidates"):
        SiteNowcaster(candidates=("magic",))
    with pytest.raises(NowcastInputError, match="params"):
        ConceptualNowcaster().predict_series(t, rain, depth)
    with pytest.raises(NowcastInputError, match="models"):
        BoostingNowcaster().predict_series(t, rain, depth)
    with pytest.raises(NowcastInputError, match="depth_cm"):
        nowcast_sites([true_params(clean.sites[0])], rain[None], depth[None, :-1])
    nowcaster = SiteNowcaster()
    nowcaster.models = {"persistence": PersistenceNowcaster()}
    nowcaster.chosen = "persistence"
    with pytest.raises(NowcastInputError, match="threshold_cm"):
        evaluate(nowcaster, t, rain, depth, threshold_cm=-1)
